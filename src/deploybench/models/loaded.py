"""A loaded model and what is known about it: the leaf every stage above models/ builds on.

Kept free of torch at import time (types only), so server workers and the light CLI can name it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deploybench.config import ModelSpec

if TYPE_CHECKING:
    from torch import nn

    from deploybench.sagemaker.answers import AnswerDiff
    from deploybench.sagemaker.handler_check import HandlerCheck


class ModelLoadError(ValueError):
    """A model source that cannot be loaded; the message names the file or name and the problem."""


@dataclass
class LoadedModel:
    built_module: nn.Module | None  # None until first use when module_factory is set (see .module)
    spec: ModelSpec
    input_shape: tuple[int, int, int]
    weights: str  # "pretrained" | "random" | "file:<path>" — shown in every output
    labels: list[str] | None
    fingerprint: str  # hash of source + weights (never a file's path), keys the artifact cache
    onnx_path: Path | None = None  # set for ONNX sources: only ONNX-based backends can build them
    # How a photo becomes this model's input when that is not the reference preprocessing (a SageMaker
    # handler's input_fn): int8 calibration and parity photos go through it.
    preprocess: Callable[[Any], np.ndarray] | None = None
    sample_inputs: np.ndarray | None = None  # the user's own requests as model inputs: parity runs them first
    handler: HandlerCheck | None = None  # a SageMaker handler: may a variant stand in for its network?
    # A SageMaker handler: (variant's predict, name) -> how its answers through the user's code differ
    through_handler: Callable[[Callable[[np.ndarray], np.ndarray], str], AnswerDiff] | None = None
    # Builds the module on first use: a server worker that loads a cached ONNX or OpenVINO artifact
    # never needs it, and skips torchvision's import and the network's initialisation (most of its start).
    module_factory: Callable[[], nn.Module] | None = None

    @property
    def module(self) -> nn.Module:
        if self.built_module is None:
            if self.module_factory is None:
                raise ModelLoadError(f"{self.name}: no module and nothing to build it from")
            self.built_module = self.module_factory()
        return self.built_module

    @property
    def name(self) -> str:
        return self.spec.source

    @property
    def is_torch(self) -> bool:
        """False for ONNX sources, whose module merely wraps an ONNX Runtime session."""
        return self.onnx_path is None


def hash_state(module: nn.Module, source: str) -> str:
    """A network's fingerprint: its source text and every tensor of its state, hashed."""
    digest = hashlib.sha256(source.encode())
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def hash_file(path: Path) -> str:
    """A file's fingerprint, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when empty), for one-line errors."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
