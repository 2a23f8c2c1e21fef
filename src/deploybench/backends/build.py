"""One call from a ModelSpec and a backend name to a runnable Variant (used by server workers and studies)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deploybench.backends.base import BackendUnavailableError, BuildContext, Variant, get_backend
from deploybench.config import ModelSpec
from deploybench.models import LoadedModel, load_model


def example_batch(model: LoadedModel, batch_size: int = 1) -> np.ndarray:
    """A deterministic NCHW float32 batch in the model's input shape (for tracing and warm-up)."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch_size, *model.input_shape), dtype=np.float32)


def build_variant(
    spec: ModelSpec,
    backend: str,
    *,
    threads: int,
    cache_dir: Path | None = None,
    model: LoadedModel | None = None,
) -> tuple[Variant, LoadedModel]:
    """Load the model (unless given), then build the backend's variant with `threads` intra-op threads."""
    torch.set_num_threads(threads)
    impl = get_backend(backend)
    availability = impl.availability()
    if not availability.ok:
        raise BackendUnavailableError(f"backend {backend!r} unavailable: {availability.reason}")
    model = model or load_model(spec)
    ctx = BuildContext(threads=threads, example=example_batch(model), cache_dir=cache_dir, device=impl.device)
    return impl.build(model, ctx), model
