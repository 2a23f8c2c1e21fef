"""Backends: one module per runtime, each registering a Backend class (see base.py)."""

from __future__ import annotations

import importlib

from deploybench.backends.base import (
    Availability,
    Backend,
    BackendUnavailableError,
    BuildContext,
    UnknownBackendError,
    Variant,
    all_backends,
    available_backends,
    get_backend,
    register,
)

_BACKEND_MODULES: tuple[str, ...] = (  # one entry per backend module
    "eager",
    "torch_backends",
    "onnxruntime_backend",
    "onnxruntime_int8",
    "openvino_backend",
    "openvino_int8",
    "tensorrt_backend",
    "tensorrt_int8",
    "cuda_torch",
)


def _load_all() -> None:
    """Import every backend module so that it registers itself."""
    for module in _BACKEND_MODULES:
        importlib.import_module(f"deploybench.backends.{module}")


__all__ = [
    "Availability",
    "Backend",
    "BackendUnavailableError",
    "BuildContext",
    "UnknownBackendError",
    "Variant",
    "all_backends",
    "available_backends",
    "get_backend",
    "register",
]
