"""OpenVINO on the CPU: fp32 with an explicit precision hint, and bf16.

The model comes from the shared ONNX export (one export feeds ONNX Runtime and OpenVINO, and NNCF
quantises the same graph), converted once to OpenVINO IR (.xml/.bin) and cached; compiled blobs go
to the same cache (CACHE_DIR), so a server worker's start is a load, not a compile.

Why PERFORMANCE_HINT=LATENCY: predict() is one synchronous request at a time (a server worker
serves one batch, then the next). LATENCY gives one stream that uses all INFERENCE_NUM_THREADS
threads for that request; THROUGHPUT splits the cores into several streams, which only pays off
with several requests in flight at once, and would leave cores idle at batch 1 here. Throughput on
a machine comes from running more workers, each with its own threads, which the study sweeps.

Precision is read back from the compiled model, never assumed: OpenVINO silently turns a default
fp32 model into bf16 on CPUs with AVX512-BF16/AMX, and refuses bf16 on CPUs without it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from deploybench.backends.base import Availability, Backend, BuildContext, Variant, register
from deploybench.backends.cache import library_versions
from deploybench.backends.onnx_export import artifact_dir, ensure_available, exported_onnx, library_importable
from deploybench.models import LoadedModel

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


def compile_config(threads: int, precision_hint: str | None, cache_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
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
    """A compiled OpenVINO model with one reusable infer request (guarded: requests are not thread-safe)."""

    def __init__(self, backend: str, compiled: Any, xml: Path, build_seconds: float) -> None:
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
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            result = self._request.infer({0: batch}, share_inputs=True, share_outputs=False)
        return np.asarray(result[0], dtype=np.float32)


def compile_ir(
    backend: str, xml: Path, ctx: BuildContext, precision_hint: str | None, start: float
) -> Variant:
    """Compile IR for the CPU (through the blob cache next to it) and wrap it as a Variant."""
    config = compile_config(ctx.threads, precision_hint, xml.parent / "compiled")
    compiled = ov_core().compile_model(str(xml), "CPU", config)
    return OpenVinoVariant(backend, compiled, xml, time.perf_counter() - start)


class _OpenVinoFloat(Backend):
    """fp32 IR compiled with an explicit INFERENCE_PRECISION_HINT."""

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
