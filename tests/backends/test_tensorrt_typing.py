"""The TensorRT backends' precision is in their graphs (TensorRT 11 has no fp16 or int8 builder flags):
fp16 is an fp16-typed ONNX with float32 inputs and outputs, cached, as accurate as fp16 is; int8 is
explicit Q/DQ, symmetric S8. Checked here without a GPU: the graphs, and ONNX Runtime's CPU run of
them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from deploybench.backends import BuildContext, get_backend
from deploybench.backends.onnx_export import exported_onnx, onnx_input_name
from deploybench.backends.onnxruntime_int8 import quantized_precision
from deploybench.backends.tensorrt_backend import fp16_onnx, ort_has_tensorrt
from deploybench.backends.tensorrt_int8 import symmetric_qdq
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


def test_tensorrt_int8_quantizes_explicitly_with_symmetric_s8_and_keeps_the_networks_answers(
    lite0: LoadedModel, ctx: BuildContext, photos: np.ndarray, reference: np.ndarray
) -> None:
    """TensorRT executes int8 only from Q/DQ nodes with zero points 0 (symmetric S8); the CPU backend's
    U8 activations would not build there. The graph is run here by ONNX Runtime's CPU kernels."""
    path = symmetric_qdq(lite0, ctx, "tensorrt-int8")
    graph = onnx.load(str(path)).graph
    quantize = [node for node in graph.node if node.op_type == "QuantizeLinear"]
    assert quantize and quantized_precision(path) == "int8"
    initializers = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    zero_points = [initializers[node.input[2]] for node in quantize if len(node.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {onnx_input_name(path): photos})[0]
    assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.5  # int8, pretrained: mostly the same
    availability = get_backend("tensorrt-int8").availability()
    assert availability.ok == (torch.cuda.is_available() and ort_has_tensorrt())
