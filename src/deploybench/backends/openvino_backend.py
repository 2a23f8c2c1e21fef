"""OpenVINO on the CPU: fp32 with an explicit precision hint, and bf16.

The model comes from the shared ONNX export (one export feeds ONNX Runtime and OpenVINO, and NNCF
quantises the same graph), converted once to OpenVINO IR (.xml/.bin) and cached; compiled blobs go
to the same cache (CACHE_DIR), so a server worker's start is a load, not a compile.

Streams (RuntimeKnobs.streams): with one stream, PERFORMANCE_HINT=LATENCY runs each request on all
INFERENCE_NUM_THREADS threads. With S > 1 streams, THROUGHPUT mode splits the threads into S
streams and the variant keeps S infer requests, so S predict() calls from S threads run at once
(infer() releases the GIL): OpenVINO's own concurrency in one process, the alternative to S worker
processes. Every setting is explicit (NUM_STREAMS, INFERENCE_NUM_THREADS, ENABLE_CPU_PINNING) and
read back from the compiled model: OpenVINO's default pinning can put the threads of two 1-thread
processes on the same core, so pinning is a knob (RuntimeKnobs.thread_pinning), and the
server gives each worker its own cores first (serve/placement.py).

Precision is read back from the compiled model, never assumed: OpenVINO silently turns a default
fp32 model into bf16 on CPUs with AVX512-BF16/AMX, and refuses bf16 on CPUs without it.
"""

from __future__ import annotations

import os
import queue
import time
from collections import Counter
from functools import cache
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
from deploybench.backends.onnx_export import artifact_dir, ensure_available, exported_onnx
from deploybench.cache import library_versions
from deploybench.config import RuntimeKnobs
from deploybench.models.loaded import LoadedModel

OV_INSTALL_HINT = "pip install openvino==2026.4.1"
IR_FILE = "model.xml"
COMPUTE_LAYERS = ("Convolution", "FullyConnected", "MatMul", "GroupConvolution", "Deconvolution")
PRECISION_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "i8": "int8", "u8": "int8"}


def ov_availability() -> Availability:
    if not library_importable("openvino"):
        return Availability(False, OV_INSTALL_HINT)
    return Availability(True)


@cache
def ov_core() -> Any:
    import openvino as ov

    return ov.Core()


def save_ir(model: Any, xml: Path) -> None:
    """Write the .bin first, then rename the .xml into place: a present .xml means a complete pair."""
    import openvino as ov

    tmp_xml = xml.with_name(f".{os.getpid()}.tmp.{xml.name}")
    ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
    os.replace(tmp_xml.with_suffix(".bin"), xml.with_suffix(".bin"))
    os.replace(tmp_xml, xml)


def fp32_ir(model: LoadedModel, ctx: BuildContext) -> Path:
    """The model as fp32 OpenVINO IR, converted from the shared ONNX export once and cached."""
    xml = artifact_dir(model, "openvino-ir", ctx, {"from": "onnx", "compress_to_fp16": False}) / IR_FILE
    if not xml.exists():
        save_ir(ov_core().read_model(str(exported_onnx(model, ctx))), xml)
    return xml


READ_BACK = (
    "PERFORMANCE_HINT",
    "NUM_STREAMS",
    "INFERENCE_NUM_THREADS",
    "ENABLE_CPU_PINNING",
    "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
)


def compile_config(
    threads: int, precision_hint: str | None, cache_dir: Path, runtime: RuntimeKnobs | None = None
) -> dict[str, Any]:
    runtime = runtime or RuntimeKnobs()
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY" if runtime.streams == 1 else "THROUGHPUT",
        "NUM_STREAMS": runtime.streams,
        "INFERENCE_NUM_THREADS": threads,
        "ENABLE_CPU_PINNING": runtime.thread_pinning,
        "CACHE_DIR": str(cache_dir),
    }
    if precision_hint is not None:
        config["INFERENCE_PRECISION_HINT"] = precision_hint
    return config


def runtime_precision(compiled: Any) -> str:
    """What the compute layers (conv, matmul) actually run in, from the compiled runtime graph."""
    counts: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in COMPUTE_LAYERS:
            counts[info["runtimePrecision"].astype(str)] += 1
    if not counts:
        hint = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        return PRECISION_NAMES.get(hint, hint)
    name = counts.most_common(1)[0][0]
    return PRECISION_NAMES.get(name, name)


class OpenVinoVariant(Variant):
    """A compiled OpenVINO model with one infer request per stream; a call borrows a free one
    (a request is not thread-safe, the compiled model runs several at once)."""

    def __init__(self, backend: str, compiled: Any, xml: Path, build_seconds: float, streams: int) -> None:
        self.backend = backend
        self.compiled = compiled
        self.precision = runtime_precision(compiled)
        self.inference_precision_hint = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.build_seconds = build_seconds
        self.artifact_bytes = xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
        self.artifact_path = xml
        self.versions = {
            k: v for k, v in library_versions().items() if k in ("openvino", "nncf", "onnx", "torch")
        }
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(streams):
            self._requests.put(compiled.create_infer_request())

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        request = self._requests.get()
        try:
            result = request.infer({0: batch}, share_inputs=True, share_outputs=False)
        finally:
            self._requests.put(request)
        return np.asarray(result[0], dtype=np.float32)

    def runtime_settings(self) -> dict[str, object]:
        return {name: str(self.compiled.get_property(name)) for name in READ_BACK}


def compile_ir(
    backend: str, xml: Path, ctx: BuildContext, precision_hint: str | None, start: float
) -> Variant:
    """Compile IR for the CPU (through the blob cache next to it) and wrap it as a Variant."""
    config = compile_config(ctx.threads, precision_hint, xml.parent / "compiled", ctx.runtime)
    compiled = ov_core().compile_model(str(xml), "CPU", config)
    return OpenVinoVariant(backend, compiled, xml, time.perf_counter() - start, ctx.runtime.streams)


OV_KNOBS = frozenset({"thread_pinning"})  # OpenVINO's TBB threads have no spin or inter-op setting


class _OpenVinoFloat(Backend):
    """fp32 IR compiled with an explicit INFERENCE_PRECISION_HINT."""

    runtime_knobs = OV_KNOBS

    precision_hint: str

    def availability(self) -> Availability:
        return ov_availability()

    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        ensure_available(self)
        start = time.perf_counter()
        return compile_ir(self.name, fp32_ir(model, ctx), ctx, self.precision_hint, start)


@register
class OpenVinoBackend(_OpenVinoFloat):
    name = "openvino"
    precision = "fp32"
    precision_hint = "f32"
    description = "OpenVINO CPU, INFERENCE_PRECISION_HINT=f32 (explicit: the default may be bf16)"


@register
class OpenVinoBf16Backend(_OpenVinoFloat):
    name = "openvino-bf16"
    precision = "bf16"
    precision_hint = "bf16"
    description = "OpenVINO CPU, INFERENCE_PRECISION_HINT=bf16 (falls back to fp32 without CPU bf16)"
