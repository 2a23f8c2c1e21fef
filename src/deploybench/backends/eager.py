"""PyTorch eager fp32: the reference every other variant is checked against.

TorchModuleVariant is shared by every torch-based backend: it runs a callable module under
inference_mode, optionally in channels-last layout and under autocast, on the CPU or a CUDA device.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time

import numpy as np
import torch

from deploybench.backends.base import (
    Availability,
    Backend,
    BackendUnavailableError,
    BuildContext,
    Variant,
    register,
)
from deploybench.models.loaded import LoadedModel
from deploybench.models.sources import OnnxModule

TORCH_KNOBS = frozenset({"spin", "inter_op_threads", "thread_pinning"})  # via OpenMP env + inter-op pool
OMP_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OMP_PROC_BIND", "OMP_PLACES")


def apply_torch_threads(ctx: BuildContext) -> None:
    """Intra-op threads per stream and the inter-op pool size, both explicit (torch's inter-op pool
    defaults to one thread per core of the machine). The pool size can only change before its first
    use in this process, so what torch really has is read back in runtime_settings()."""
    torch.set_num_threads(ctx.runtime.threads_per_stream(ctx.threads))
    if torch.get_num_interop_threads() != ctx.runtime.inter_op_threads:
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(ctx.runtime.inter_op_threads)


def torch_module_copy(model: LoadedModel, ctx: BuildContext, backend: str) -> torch.nn.Module:
    """A private copy of the model's module on ctx.device; refuses ONNX sources with the reason."""
    if not model.is_torch:
        raise BackendUnavailableError(f"{backend} needs a torch model; {model.name} is an ONNX file")
    if ctx.device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailableError(f"{backend}: no CUDA device")
    apply_torch_threads(ctx)
    return copy.deepcopy(model.module).to(ctx.device).eval()


class TorchModuleVariant(Variant):
    """Any variant that is a callable torch module run under inference_mode."""

    def __init__(
        self,
        backend: str,
        precision: str,
        module: torch.nn.Module,
        build_seconds: float,
        *,
        device: str = "cpu",
        channels_last: bool = False,
        autocast_dtype: torch.dtype | None = None,
        grad_mode: str = "inference",
    ) -> None:
        self.backend = backend
        self.precision = precision
        self.module = module
        self.build_seconds = build_seconds
        self.device = device
        self.channels_last = channels_last
        self.autocast_dtype = autocast_dtype
        self.grad_mode = grad_mode  # inductor's frozen graphs want no_grad, not inference_mode
        self.versions = {"torch": torch.__version__}

    def _context(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode() if self.grad_mode == "inference" else torch.no_grad())
        if self.autocast_dtype is not None:
            stack.enter_context(torch.autocast(torch.device(self.device).type, dtype=self.autocast_dtype))
        return stack

    def predict(self, batch: np.ndarray) -> np.ndarray:
        inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.device != "cpu":
            inputs = inputs.to(self.device)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with self._context():
            out = self.module(inputs)
        return out.float().cpu().numpy()

    def runtime_settings(self) -> dict[str, object]:
        settings: dict[str, object] = {
            "intra_op_threads": torch.get_num_threads(),
            "inter_op_threads": torch.get_num_interop_threads(),
        }
        settings.update({name: os.environ.get(name) for name in OMP_VARIABLES})
        return settings


@register
class EagerBackend(Backend):
    name = "eager"
    precision = "fp32"
    description = "PyTorch eager, fp32 (the reference)"
    runtime_knobs = TORCH_KNOBS

    def availability(self) -> Availability:
        return Availability(True)

    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        start = time.perf_counter()
        apply_torch_threads(ctx)
        if isinstance(model.module, OnnxModule):  # ONNX sources: the reference is ONNX Runtime fp32
            model.module.set_threads(ctx.threads)
            variant = TorchModuleVariant(self.name, "fp32", model.module, time.perf_counter() - start)
            variant.versions = {"onnxruntime": _onnxruntime_version()}
            return variant
        if torch.device(ctx.device).type == "cpu":  # the model's own module: nothing copied
            return TorchModuleVariant(self.name, "fp32", model.module, time.perf_counter() - start)
        # Another device gets a private copy: the caller's module stays on the CPU for every other
        # variant (they copy from it), and the reference runs where it was asked to.
        module = torch_module_copy(model, ctx, self.name)
        variant = TorchModuleVariant(self.name, "fp32", module, 0.0, device=ctx.device)
        variant.build_seconds = time.perf_counter() - start
        return variant


def _onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)
