"""Shared models and inputs for the backend tests (session-scoped: loaded once)."""

from __future__ import annotations

import numpy as np
import pytest

from deploybench.config import ModelSpec
from deploybench.inputs.calibration import parity_inputs
from deploybench.models.loaded import LoadedModel
from deploybench.models.sources import load_model, logits_for

TINY = "backends.tiny_models:tiny_cnn"


@pytest.fixture(scope="session")
def effnet() -> LoadedModel:
    """The pretrained EfficientNet-Lite0: a trained net, so parity's top-1 agreement means something."""
    return load_model(ModelSpec(source="efficientnet-lite0"))


@pytest.fixture(scope="session")
def effnet_inputs() -> np.ndarray:
    return parity_inputs(count=16)


@pytest.fixture(scope="session")
def effnet_reference(effnet: LoadedModel, effnet_inputs: np.ndarray) -> np.ndarray:
    return logits_for(effnet, effnet_inputs)


@pytest.fixture(scope="session")
def tiny() -> LoadedModel:
    return load_model(ModelSpec(source=TINY))


@pytest.fixture
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> object:
    return tmp_path_factory.mktemp("cache")
