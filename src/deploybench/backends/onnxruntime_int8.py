"""ONNX Runtime int8: static post-training quantisation to QDQ, per-channel weights.

U8 activations with S8 weights, because that is the pair ONNX Runtime's x86 kernels run with
VNNI (u8 x s8 dot products); S8 activations run slower. Scales come from MinMax calibration over
real preprocessed photos (BuildContext.calibration); the quantised model is cached, keyed by the
calibration set, so server workers only load it.

On a CPU without VNNI/AMX (e.g. AVX2-only AMD EPYC Milan) ORT's u8 x s8 kernels use VPMADDUBSW,
whose 16-bit sums saturate; ORT's documented remedy is 7-bit weights (reduce_range), whose
products cannot saturate. With VNNI the full 8-bit range is kept.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from deploybench.backends.base import Availability, Backend, BuildContext, Variant, register
from deploybench.backends.onnx_export import (
    artifact_dir,
    calibration_key,
    ensure_available,
    exported_onnx,
    onnx_input_name,
    require_calibration,
    write_atomically,
)
from deploybench.backends.onnxruntime_backend import ORT_KNOBS, OrtVariant, ort_availability, ort_session
from deploybench.hardware import has_int8_dot_product
from deploybench.models.loaded import LoadedModel

INT8_FILE = "model.int8.onnx"
CALIBRATION_BATCH = (
    8  # MinMax only tracks extremes, so batching the calibration pass changes nothing but speed
)
QUANT_OPTIONS = {
    "format": "QDQ",
    "per_channel": True,
    "activations": "QUInt8",
    "weights": "QInt8",
    "method": "MinMax",
}


def quant_options() -> dict[str, object]:
    """QUANT_OPTIONS plus the weight range this CPU needs (part of the artifact cache key)."""
    return {**QUANT_OPTIONS, "reduce_range": not has_int8_dot_product()}


def calibration_batches(images: list[np.ndarray], batch: int = CALIBRATION_BATCH) -> Iterator[np.ndarray]:
    for start in range(0, len(images), batch):
        yield np.stack(images[start : start + batch]).astype(np.float32, copy=False)


def _data_reader(images: list[np.ndarray], input_name: str) -> Any:
    """An onnxruntime CalibrationDataReader over the images (class built lazily: ORT is imported late)."""
    from onnxruntime.quantization import CalibrationDataReader

    class ImageReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(())
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

        def rewind(self) -> None:
            self._batches = calibration_batches(images)

    return ImageReader()


def quantize_qdq(
    fp32: Path, target: Path, images: list[np.ndarray], reduce_range: bool, *, symmetric_s8: bool = False
) -> None:
    """Shape-infer and pre-optimise (quant_pre_process), then quantize_static to QDQ per-channel: U8
    activations / S8 weights (ONNX Runtime's CPU kernels), or `symmetric_s8`: S8 activations and
    weights, zero points 0 (what TensorRT's explicit quantization takes)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    prepared = target.with_name(f".{os.getpid()}.prepared.onnx")
    symmetric = {"ActivationSymmetric": True, "WeightSymmetric": True} if symmetric_s8 else {}
    try:
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(
            str(prepared),
            str(target),
            _data_reader(images, onnx_input_name(fp32)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QInt8 if symmetric_s8 else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options=symmetric,
        )
    finally:
        prepared.unlink(missing_ok=True)


def quantized_precision(path: Path) -> str:
    """Read the precision back from the graph: int8 only if it really holds QuantizeLinear nodes."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return "int8" if any(node.op_type == "QuantizeLinear" for node in graph.node) else "fp32"


@register
class OnnxRuntimeInt8Backend(Backend):
    name = "onnxruntime-int8"
    precision = "int8"
    needs_calibration = True
    description = "ONNX Runtime int8 (static QDQ, per-channel, u8 activations / s8 weights)"
    runtime_knobs = ORT_KNOBS

    def availability(self) -> Availability:
        return ort_availability()

    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        ensure_available(self)
        start = time.perf_counter()
        options = {**quant_options(), "calibration": calibration_key(ctx, self.name)}
        target = artifact_dir(model, self.name, ctx, options) / INT8_FILE
        if not target.exists():  # a hit reads the int8 file only: no fp32 export (nor the network)
            fp32 = exported_onnx(model, ctx)
            reduce_range = bool(options["reduce_range"])
            images = require_calibration(ctx, self.name)
            write_atomically(target, lambda tmp: quantize_qdq(fp32, tmp, images, reduce_range))
        # QDQ int8 kernels are CPU ones; the CUDA provider would run most of the graph dequantised.
        session = ort_session(target, ctx.threads, providers=["CPUExecutionProvider"], runtime=ctx.runtime)
        precision = quantized_precision(target)
        return OrtVariant(self.name, precision, session, target, time.perf_counter() - start)
