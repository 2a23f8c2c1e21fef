"""TensorRT int8 by explicit quantization: a Q/DQ graph, as TensorRT 11 requires (its int8 builder
flag and calibrators are gone).

The graph is quantized here, from deploybench's calibration photos, by ONNX Runtime's static QDQ
quantizer with symmetric S8 activations and per-channel S8 weights (zero points 0: the only int8
TensorRT executes), then built into an engine by ONNX Runtime's TensorRT provider, the engine cached
with the artifact. NVIDIA's ModelOpt writes the same Q/DQ form; it is not on this project's package
index, so the quantizer that is stands in. Unavailable without a CUDA device or without ONNX
Runtime's TensorRT provider; the Q/DQ graph itself is built and checked on any machine (tests).
"""

from __future__ import annotations

import time
from pathlib import Path

from deploybench.backends.base import (
    Availability,
    Backend,
    BuildContext,
    Variant,
    register,
)
from deploybench.backends.onnx_export import (
    artifact_dir,
    calibration_key,
    ensure_available,
    exported_onnx,
    require_calibration,
    write_atomically,
)
from deploybench.backends.onnxruntime_backend import cuda_device_present
from deploybench.backends.onnxruntime_int8 import quantize_qdq, quantized_precision
from deploybench.backends.tensorrt_backend import MAX_BATCH, ort_has_tensorrt, trt_variant
from deploybench.models.loaded import LoadedModel

QDQ_FILE = "model.int8.s8s8.onnx"
QUANT_OPTIONS = {"format": "QDQ", "per_channel": True, "activations": "QInt8", "weights": "QInt8"}
QUANT_OPTIONS |= {"symmetric": True, "method": "MinMax"}


def symmetric_qdq(model: LoadedModel, ctx: BuildContext, backend: str) -> Path:
    """The model's S8/S8 symmetric Q/DQ graph, keyed by the calibration set, built once."""
    options = {**QUANT_OPTIONS, "calibration": calibration_key(ctx, backend)}
    target = artifact_dir(model, backend, ctx, options) / QDQ_FILE
    if not target.exists():
        fp32 = exported_onnx(model, ctx)
        images = require_calibration(ctx, backend)
        write_atomically(target, lambda tmp: quantize_qdq(fp32, tmp, images, False, symmetric_s8=True))
    return target


@register
class TensorRTInt8Backend(Backend):
    name = "tensorrt-int8"
    precision = "int8"
    needs_calibration = True
    description = "TensorRT int8 on CUDA: explicit Q/DQ (symmetric s8), ONNX Runtime's TensorRT provider"
    device = "cuda"

    def availability(self) -> Availability:
        if not cuda_device_present():
            return Availability(False, "unavailable: no CUDA device")
        if not ort_has_tensorrt():
            return Availability(False, "needs ONNX Runtime's TensorRT provider (onnxruntime-gpu, TensorRT)")
        return Availability(True)

    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        ensure_available(self)
        start = time.perf_counter()
        path = symmetric_qdq(model, ctx, self.name)
        engine_dir = artifact_dir(model, self.name, ctx, {"int8": "qdq", "max_batch": MAX_BATCH})
        variant = trt_variant(self.name, quantized_precision(path), model, ctx, path, engine_dir)
        variant.build_seconds = time.perf_counter() - start
        return variant
