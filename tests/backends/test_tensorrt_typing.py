"""The TensorRT backend's precision is in its graph (TensorRT 11 has no fp16 builder flag): the ONNX
it hands ONNX Runtime's TensorRT provider is fp16-typed with float32 inputs and outputs, cached, and
as accurate as fp16 is. Checked here without a GPU: the graph, and ONNX Runtime's CPU run of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from deploybench.backends import BuildContext
from deploybench.backends.onnx_export import exported_onnx, onnx_input_name
from deploybench.backends.tensorrt_backend import fp16_onnx
from deploybench.models.loaded import LoadedModel

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


def _elem(value: onnx.ValueInfoProto) -> int:
    return value.type.tensor_type.elem_type


def test_the_tensorrt_graph_is_fp16_typed_with_float32_io_and_cached(
    lite0: LoadedModel, ctx: BuildContext, photos: np.ndarray, reference: np.ndarray
) -> None:
    fp32 = exported_onnx(lite0, ctx)
    typed = fp16_onnx(lite0, ctx, fp32)
    assert typed != fp32 and typed.exists()
    graph = onnx.load(str(typed)).graph
    weights = [init for init in graph.initializer if len(init.dims) >= 2]  # conv and dense weights
    assert weights and all(init.data_type == FLOAT16 for init in weights)
    assert [_elem(v) for v in graph.input] == [FLOAT] and [_elem(v) for v in graph.output] == [FLOAT]
    mtime = typed.stat().st_mtime_ns
    assert fp16_onnx(lite0, ctx, fp32) == typed and typed.stat().st_mtime_ns == mtime  # built once
    session = ort.InferenceSession(str(typed), providers=["CPUExecutionProvider"])
    logits = session.run(None, {onnx_input_name(Path(typed)): photos})[0]
    assert logits.dtype == np.float32
    cosine = np.sum(logits * reference, 1) / (
        np.linalg.norm(logits, axis=1) * np.linalg.norm(reference, axis=1)
    )
    assert cosine.min() > 0.99, cosine  # fp16 rounding only: the parity gate's reduced limits hold
    assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.75
