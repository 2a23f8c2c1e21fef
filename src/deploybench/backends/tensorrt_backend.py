"""TensorRT fp16 on a CUDA device: torch-tensorrt when it is installed, else ONNX Runtime's TensorRT provider.

Precision is in the graph, as TensorRT 11 requires (its fp16 and int8 builder flags are gone: strong
typing only): torch-tensorrt compiles an fp16 module with explicit typing, and the ONNX Runtime path
runs an fp16-typed ONNX (onnxruntime's float16 converter, float32 inputs and outputs kept) whose
engine TensorRT 10 builds in fp16 too (its weak-typing flag stays set for it). Without a CUDA device
the backend reports itself unavailable and never imports either library. Batch is dynamic from 1 to
MAX_BATCH, tuned for OPT_BATCH (a server's usual dynamic-batching size); larger batches run in
chunks. The ORT path keeps TensorRT's engine cache in the artifact cache, so a server worker reuses
the engine instead of rebuilding it (minutes). The torch-tensorrt path rebuilds per process: its
saved-program format with dynamic shapes is not worth trusting untested.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np

from deploybench.backends.base import (
    Availability,
    Backend,
    BackendUnavailableError,
    BuildContext,
    Variant,
    library_importable,
    register,
)
from deploybench.backends.onnx_export import (
    artifact_dir,
    ensure_available,
    exported_onnx,
    onnx_input_name,
    write_atomically,
)
from deploybench.backends.onnxruntime_backend import OrtVariant, cuda_device_present, ort_session
from deploybench.cache import directory_bytes
from deploybench.models.loaded import LoadedModel

OPT_BATCH = 8
MAX_BATCH = 32
TRT_INSTALL_HINT = "pip install torch-tensorrt (matching torch 2.14.1), or onnxruntime-gpu with TensorRT"


def ort_has_tensorrt() -> bool:
    if not library_importable("onnxruntime"):
        return False
    import onnxruntime as ort

    return "TensorrtExecutionProvider" in ort.get_available_providers()


class TorchTensorRTVariant(Variant):
    """A torch-tensorrt compiled module; inputs go to the GPU, logits come back as float32 numpy."""

    def __init__(self, module: Any, build_seconds: float) -> None:
        import torch
        import torch_tensorrt

        self.backend = "tensorrt"
        self.precision = "fp16"
        self.device = "cuda"
        self.module = module
        self.build_seconds = build_seconds
        self.versions = {"torch": torch.__version__, "torch_tensorrt": torch_tensorrt.__version__}

    def predict(self, batch: np.ndarray) -> np.ndarray:
        import torch

        parts = []
        with torch.inference_mode():
            for start in range(0, len(batch), MAX_BATCH):
                chunk = torch.from_numpy(
                    np.ascontiguousarray(batch[start : start + MAX_BATCH], dtype=np.float32)
                )
                parts.append(self.module(chunk.cuda().half()).float().cpu().numpy())
        return np.concatenate(parts)


def build_torch_tensorrt(model: LoadedModel) -> Any:
    """torch_tensorrt.compile (dynamo IR) of the fp16 module, explicitly typed, a dynamic batch profile."""
    import torch
    import torch_tensorrt

    module = copy.deepcopy(model.module).eval().cuda()  # the caller's module stays on the CPU for eager
    shape = model.input_shape
    spec = torch_tensorrt.Input(
        min_shape=(1, *shape),
        opt_shape=(OPT_BATCH, *shape),
        max_shape=(MAX_BATCH, *shape),
        dtype=torch.float16,
    )
    # explicit typing: the fp16 module's own types, not a precision flag (removed in TensorRT 11)
    return torch_tensorrt.compile(module.half(), ir="dynamo", inputs=[spec], use_explicit_typing=True)


def fp16_onnx(model: LoadedModel, ctx: BuildContext, fp32: Path) -> Path:
    """The fp32 ONNX converted to fp16 types (weights and activations; float32 inputs and outputs kept,
    so callers feed and read float32), cached beside the other artifacts: the typed graph TensorRT 11
    builds in fp16 (strong typing), where TensorRT 10 needed a builder flag."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    target = artifact_dir(model, "onnx-fp16", ctx, {"source": fp32.name, "keep_io_types": True}) / fp32.name
    if not target.exists():
        typed = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
        write_atomically(target, lambda tmp: onnx.save(typed, str(tmp)))
    return target


def trt_provider(
    model: LoadedModel, engine_dir: Path, input_name: str, *, int8: bool = False
) -> tuple[str, dict[str, Any]]:
    """ORT TensorRT provider options: fp16 (and int8 for a Q/DQ graph), an engine cache on disk, a
    1..MAX_BATCH batch profile. The precision flags are TensorRT 10's (weak typing); TensorRT 11 reads
    the graph's own types and Q/DQ nodes."""
    dims = "x".join(str(d) for d in model.input_shape)
    return (
        "TensorrtExecutionProvider",
        {
            "trt_fp16_enable": True,
            **({"trt_int8_enable": True} if int8 else {}),
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(engine_dir),
            "trt_profile_min_shapes": f"{input_name}:1x{dims}",
            "trt_profile_opt_shapes": f"{input_name}:{OPT_BATCH}x{dims}",
            "trt_profile_max_shapes": f"{input_name}:{MAX_BATCH}x{dims}",
        },
    )


class ChunkedOrtVariant(OrtVariant):
    """The TensorRT engine's profile ends at MAX_BATCH; larger batches run in chunks."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return np.concatenate([self._run(batch[i : i + MAX_BATCH]) for i in range(0, len(batch), MAX_BATCH)])


@register
class TensorRTBackend(Backend):
    name = "tensorrt"
    precision = "fp16"
    description = "TensorRT fp16 on CUDA (torch-tensorrt, else the ONNX Runtime TensorRT provider)"
    rebuilt_per_process = True  # the torch-tensorrt engine is rebuilt per process: workers re-verify it
    device = "cuda"

    def availability(self) -> Availability:
        if not cuda_device_present():
            return Availability(False, "unavailable: no CUDA device")
        if not library_importable("torch_tensorrt") and not ort_has_tensorrt():
            return Availability(False, TRT_INSTALL_HINT)
        return Availability(True)

    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        ensure_available(self)
        start = time.perf_counter()
        if library_importable("torch_tensorrt"):
            variant = TorchTensorRTVariant(build_torch_tensorrt(model), 0.0)
            variant.predict(ctx.example)  # first call finishes lazy initialisation: count it in build time
            variant.build_seconds = time.perf_counter() - start
            return variant
        path = fp16_onnx(model, ctx, exported_onnx(model, ctx))
        engine_dir = artifact_dir(model, self.name, ctx, {"fp16": True, "max_batch": MAX_BATCH})
        variant = trt_variant(self.name, "fp16", model, ctx, path, engine_dir)
        variant.build_seconds = time.perf_counter() - start
        return variant


def trt_variant(
    name: str, precision: str, model: LoadedModel, ctx: BuildContext, path: Path, engine_dir: Path
) -> ChunkedOrtVariant:
    """`path` run by ONNX Runtime's TensorRT provider (engine cached in engine_dir), its first batch run:
    TensorRT builds the engine then. ORT quietly falls back to CUDA when TensorRT fails to load, which
    is not this backend: refused."""
    trt = trt_provider(model, engine_dir, onnx_input_name(path), int8=precision == "int8")
    providers = [trt, "CUDAExecutionProvider", "CPUExecutionProvider"]
    session = ort_session(path, ctx.threads, providers=providers)
    if session.get_providers()[0] != "TensorrtExecutionProvider":
        loaded = ", ".join(session.get_providers())
        raise BackendUnavailableError(f"{name}: ONNX Runtime did not load TensorRT (providers: {loaded})")
    variant = ChunkedOrtVariant(name, precision, session, path, 0.0)
    variant.predict(ctx.example)
    variant.artifact_bytes = directory_bytes(engine_dir)
    return variant
