"""PyTorch variants beyond eager fp32: channels-last, bf16 autocast, TorchScript and torch.compile.

Each builds from the model's own nn.Module (never mutating it: the eager reference shares it) and
reads its precision back from the output dtype of a real forward pass.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import warnings

import numpy as np
import torch

from deploybench.backends.base import (
    Availability,
    Backend,
    BuildContext,
    Variant,
    register,
)
from deploybench.backends.eager import TORCH_KNOBS, TorchModuleVariant, torch_module_copy
from deploybench.cache import directory_bytes
from deploybench.hardware import has_native_bf16
from deploybench.models.loaded import LoadedModel

DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def _read_back_precision(variant: TorchModuleVariant, example: np.ndarray) -> TorchModuleVariant:
    """Run one batch and name the dtype the logits came out in: the precision actually run."""
    inputs = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32)).to(variant.device)
    if variant.channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    with variant._context():
        out = variant.module(inputs)
    variant.precision = DTYPE_NAMES.get(out.dtype, str(out.dtype).removeprefix("torch."))
    return variant


class _TorchBackend(Backend):
    runtime_knobs = TORCH_KNOBS

    def availability(self) -> Availability:
        return Availability(True)


@register
class EagerChannelsLastBackend(_TorchBackend):
    name = "eager-channels-last"
    precision = "fp32"
    description = "PyTorch eager fp32, NHWC (channels_last) weights and inputs"

    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        start = time.perf_counter()
        module = torch_module_copy(model, ctx, self.name).to(memory_format=torch.channels_last)
        variant = TorchModuleVariant(self.name, "fp32", module, 0.0, device=ctx.device, channels_last=True)
        variant.build_seconds = time.perf_counter() - start
        return _read_back_precision(variant, ctx.example)


@register
class EagerBf16Backend(_TorchBackend):
    name = "eager-bf16"
    precision = "bf16"
    description = "PyTorch eager under autocast: bf16 on CPU (+ channels_last), fp16 on CUDA"

    def availability(self) -> Availability:
        """Without bf16 instructions autocast emulates bf16, slower than fp32 eager and costly to
        verify: a variant that can only lose is not built."""
        if torch.cuda.is_available() or has_native_bf16():
            return Availability(True)
        return Availability(
            False,
            "unavailable: this CPU has no bf16 instructions (avx512_bf16 / amx_bf16); PyTorch would emulate "
            "bf16, slower than fp32",
        )

    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        start = time.perf_counter()
        module = torch_module_copy(model, ctx, self.name)
        on_cpu = torch.device(ctx.device).type == "cpu"
        if on_cpu:
            module = module.to(memory_format=torch.channels_last)
        dtype = torch.bfloat16 if on_cpu else torch.float16
        variant = TorchModuleVariant(
            self.name, "bf16", module, 0.0, device=ctx.device, channels_last=on_cpu, autocast_dtype=dtype
        )
        variant.build_seconds = time.perf_counter() - start
        return _read_back_precision(variant, ctx.example)


@register
class TorchScriptBackend(_TorchBackend):
    name = "torchscript"
    precision = "fp32"
    description = "TorchScript: trace + freeze + optimize_for_inference"

    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        start = time.perf_counter()
        module = torch_module_copy(model, ctx, self.name)
        cached = ctx.cache_dir / "frozen.pt" if ctx.cache_dir else None
        if cached is not None and cached.is_file():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                frozen = torch.jit.load(str(cached), map_location=ctx.device)
        else:
            frozen = self._trace_and_freeze(module, ctx)
            if cached is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    torch.jit.save(frozen, str(cached))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            optimised = torch.jit.optimize_for_inference(frozen)
        variant = TorchModuleVariant(self.name, "fp32", optimised, 0.0, device=ctx.device)
        _read_back_precision(variant, ctx.example)  # also runs the JIT's profiling pass once
        variant.build_seconds = time.perf_counter() - start
        variant.artifact_bytes = directory_bytes(cached) if cached is not None else None
        variant.artifact_path = cached  # the frozen module, reloadable (optimised ones are not): for stacks
        return variant

    @staticmethod
    def _trace_and_freeze(module: torch.nn.Module, ctx: BuildContext) -> torch.jit.ScriptModule:
        example = torch.from_numpy(ctx.example).to(ctx.device)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "deprecated": we measure it anyway
            scripted = (
                module if isinstance(module, torch.jit.ScriptModule) else torch.jit.trace(module, example)
            )
            return torch.jit.freeze(scripted.eval())


def _cxx_compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++") or shutil.which("c++")


class InductorVariant(TorchModuleVariant):
    """torch.compile output: freezing stays on for recompiles (e.g. a new batch size)."""

    def _context(self) -> contextlib.ExitStack:
        import torch._inductor.config as inductor_config

        stack = super()._context()
        stack.enter_context(inductor_config.patch(freezing=True))
        return stack


@register
class InductorBackend(Backend):
    name = "inductor"
    precision = "fp32"
    description = "torch.compile (inductor) with freezing: weights folded as constants"
    runtime_knobs = TORCH_KNOBS
    rebuilt_per_process = True  # compiled in every process: server workers verify their own build

    def availability(self) -> Availability:
        if _cxx_compiler() is None:
            return Availability(False, "inductor on CPU needs a C++ compiler: apt-get install g++")
        return Availability(True)

    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        start = time.perf_counter()
        module = torch_module_copy(model, ctx, self.name)
        # dynamic=None (torch's automatic dynamic): batch 1 keeps its static graph, the second batch
        # size compiles one graph with a dynamic batch for every other. dynamic=False would compile
        # once per size that parity and the batcher may form, each compile a slow step of the study.
        compiled = torch.compile(module, backend="inductor", dynamic=None)
        variant = InductorVariant(self.name, "fp32", compiled, 0.0, device=ctx.device, grad_mode="no_grad")
        _read_back_precision(variant, ctx.example)  # compilation happens on this first call
        variant.build_seconds = time.perf_counter() - start
        return variant
