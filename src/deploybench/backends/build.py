"""One call from a ModelSpec and a backend name to a runnable Variant (used by server workers and studies)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deploybench.backends.base import BackendUnavailableError, BuildContext, Variant, get_backend
from deploybench.cache import default_cache_root, variant_cache_dir
from deploybench.config import ModelSpec, RuntimeKnobs
from deploybench.inputs.calibration import CalibrationSet
from deploybench.models.loaded import LoadedModel
from deploybench.models.sources import load_model


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
    device: str | None = None,
    calibration_dir: Path | None = None,
    runtime: RuntimeKnobs | None = None,
) -> tuple[Variant, LoadedModel]:
    """Load the model (unless given), then build the backend's variant with `threads` intra-op threads.

    cache_dir is the cache ROOT (default $DEPLOYBENCH_CACHE or ~/.cache/deploybench); the backend gets
    its own keyed sub-directory in ctx.cache_dir. Calibration images come from the bundled calibration
    photos (or calibration_dir, else spec.calibration_data) and are made once per process. `runtime`
    (streams, spinning, thread pinning, inter-op threads) shapes how the runtime runs, never the
    cached artifact.
    """
    runtime = runtime or RuntimeKnobs()
    torch.set_num_threads(runtime.threads_per_stream(threads))
    impl = get_backend(backend)
    availability = impl.availability()
    if not availability.ok:
        raise BackendUnavailableError(f"backend {backend!r}: {availability.reason}")
    model = model or load_model(spec, cache_dir)
    device = device or impl.device
    calibration_dir = calibration_dir or spec.calibration_data
    # only int8 artifacts depend on the calibration photos (and those key them by content: calibration_key)
    calibrated = calibration_dir if impl.needs_calibration else None
    options = {"input_shape": list(model.input_shape), "device": device, "calibration": str(calibrated)}
    ctx = BuildContext(
        threads=threads,
        example=example_batch(model),
        calibration=CalibrationSet(model.input_shape, calibration_dir, model.preprocess, cache_dir)
        if impl.needs_calibration
        else [],
        cache_dir=variant_cache_dir(
            model.name, model.fingerprint, backend, options, cache_dir or default_cache_root()
        ),
        device=device,
        runtime=runtime,
    )
    return impl.build(model, ctx), model
