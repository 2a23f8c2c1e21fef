"""ONNX Runtime fp32: the shared ONNX export run with every graph optimisation on.

On a machine with a CUDA device and onnxruntime-gpu the session uses CUDAExecutionProvider (CPU
as fallback for unsupported nodes); the TensorRT provider is left to the `tensorrt` backend, whose
engine build is slow and fp16. The runtime is imported lazily so that a missing onnxruntime makes
the backend unavailable instead of breaking `import deploybench.backends`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from deploybench.backends.base import (
    Availability,
    Backend,
    BuildContext,
    Variant,
    library_importable,
    register,
)
from deploybench.backends.onnx_export import ensure_available, exported_onnx
from deploybench.cache import directory_bytes, library_versions
from deploybench.config import RuntimeKnobs
from deploybench.models.loaded import LoadedModel

ORT_INSTALL_HINT = "pip install onnxruntime==1.32.0"


def ort_availability() -> Availability:
    if not library_importable("onnxruntime"):
        return Availability(False, ORT_INSTALL_HINT)
    return Availability(True)


def cuda_device_present() -> bool:
    """A usable CUDA device, as torch sees it (torch is always installed)."""
    import torch

    return bool(torch.cuda.is_available())


SPIN_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")
AFFINITY_KEY = "session.intra_op_thread_affinities"
ORT_KNOBS = frozenset({"spin", "inter_op_threads", "thread_pinning"})


def pool_affinities(intra_threads: int) -> str | None:
    """ORT's affinity string for the intra-op pool: one 1-based logical processor per pool thread
    (the calling thread is not pinned by ORT), taken from this process's own cores in order."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if intra_threads < 2 or len(cores) < intra_threads:
        return None
    return ";".join(str(core + 1) for core in cores[1:intra_threads])


def session_options(threads: int, runtime: RuntimeKnobs | None = None) -> Any:
    """Graph optimisation ALL and every threading setting explicit (ORT's defaults pin one thread
    per physical core of the whole machine, which collides with other workers).

    Intra-op threads: the worker's threads shared by its streams (concurrent run() calls). Inter-op:
    sequential unless inter_op_threads > 1 (ORT_PARALLEL, which only pays on branchy graphs).
    Spinning (spin None) as ORT's own default wherever there is a pool to spin: its threads need no
    wake-up between parallel regions, and a spinning pool served more (bench/serve_overhead.py); a
    1-thread worker has no pool.
    """
    import onnxruntime as ort

    runtime = runtime or RuntimeKnobs()
    intra = runtime.threads_per_stream(threads)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    parallel = runtime.inter_op_threads > 1
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra
    options.inter_op_num_threads = runtime.inter_op_threads
    spin = runtime.spin if runtime.spin is not None else intra > 1 or parallel
    for key in SPIN_KEYS:
        options.add_session_config_entry(key, "1" if spin else "0")
    affinities = pool_affinities(intra) if runtime.thread_pinning else None
    if affinities:
        options.add_session_config_entry(AFFINITY_KEY, affinities)
    options.log_severity_level = 3  # errors only: ORT warns about every unused initializer otherwise
    return options


def read_back_options(session: Any) -> dict[str, object]:
    """The session's threading settings as ONNX Runtime holds them."""
    options = session.get_session_options()
    settings: dict[str, object] = {
        "intra_op_num_threads": options.intra_op_num_threads,
        "inter_op_num_threads": options.inter_op_num_threads,
        "execution_mode": str(options.execution_mode).rsplit(".", 1)[-1],
    }
    for key in (*SPIN_KEYS, AFFINITY_KEY):
        try:
            settings[key] = options.get_session_config_entry(key)
        except RuntimeError:  # not set: ORT's default applies
            settings[key] = None
    return settings


def default_providers() -> list[str]:
    """CUDA first when both the device and the provider exist, else the CPU alone."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers() and cuda_device_present():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OrtVariant(Variant):
    """An onnxruntime InferenceSession behind predict(); run() is thread-safe, so no lock is needed."""

    def __init__(
        self, backend: str, precision: str, session: Any, artifact: Path, build_seconds: float
    ) -> None:
        self.backend = backend
        self.precision = precision
        self.session = session
        self.build_seconds = build_seconds
        self.artifact_path = artifact  # the ONNX file itself: serving stacks (TorchServe, Triton) load it
        self.artifact_bytes = directory_bytes(artifact)
        self.artifact_path = artifact
        self.device = (
            "cuda"
            if session.get_providers()[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
            else "cpu"
        )
        self.versions = {k: v for k, v in library_versions().items() if k in ("onnxruntime", "onnx", "torch")}
        self.providers = list(session.get_providers())
        model_input = session.get_inputs()[0]
        self._input_name = model_input.name
        batch_dim = model_input.shape[0]
        self._fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self._fixed_batch is None or len(batch) == self._fixed_batch:
            return self._run(batch)
        step = self._fixed_batch  # a user ONNX file with a static batch: run it in chunks of that size
        return np.concatenate([self._run(batch[i : i + step]) for i in range(0, len(batch), step)])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self._input_name: batch})[0]
        return np.asarray(out, dtype=np.float32)

    def runtime_settings(self) -> dict[str, object]:
        return read_back_options(self.session)


def ort_session(
    path: Path, threads: int, providers: list[Any] | None = None, runtime: RuntimeKnobs | None = None
) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(
        str(path), session_options(threads, runtime), providers=providers or default_providers()
    )


@register
class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    precision = "fp32"
    description = "ONNX Runtime fp32, graph optimisation ALL (CUDA provider when present)"
    runtime_knobs = ORT_KNOBS

    def availability(self) -> Availability:
        return ort_availability()

    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        ensure_available(self)
        start = time.perf_counter()
        path = exported_onnx(model, ctx)
        session = ort_session(path, ctx.threads, runtime=ctx.runtime)
        return OrtVariant(self.name, "fp32", session, path, time.perf_counter() - start)
