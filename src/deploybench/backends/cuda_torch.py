"""PyTorch on a CUDA GPU as GPU inference runs it: fp16 weights and activations in channels-last
layout (tensor cores take NHWC fp16), eager or compiled by inductor with max-autotune and CUDA graphs.

- eager-fp16-cuda: module.half() in channels_last, no autocast (autocast re-casts the weights on every
  call; a served model keeps them in fp16 once);
- inductor-fp16-cuda: the same module through torch.compile(mode="max-autotune"): Triton kernels
  tuned per shape, replayed as CUDA graphs (no launch per kernel). A CUDA graph replays one fixed
  shape, so every batch is padded to the next of BUCKETS and the padding's rows dropped: at most
  len(BUCKETS) shapes are compiled and recorded, each once, when the server warms the variant up
  (warm_up_sizes), never on a request. Inductor's caches live in the variant's artifact cache, so a server
  worker reuses the kernels the study's build tuned instead of tuning them again.

Calls run on one thread the variant owns: CUDA graph trees belong to the thread that recorded them,
and a server worker calls predict from its stream threads. Both backends are unavailable without a
CUDA device; they never build on the CPU (the CPU has its own: eager-bf16, inductor).
"""

from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from deploybench.backends.base import Availability, Backend, BuildContext, Variant, register
from deploybench.backends.eager import TORCH_KNOBS, TorchModuleVariant, torch_module_copy
from deploybench.backends.torch_backends import DTYPE_NAMES
from deploybench.models.loaded import LoadedModel

BUCKETS = (1, 2, 4, 8, 16, 32, 64)  # batch shapes a CUDA-graph variant compiles; larger batches chunk
COMPILE_MODE = "max-autotune"  # Triton autotuning per shape, and CUDA graphs (torch.compile's modes)
NO_CUDA = "unavailable: no CUDA device (torch.cuda.is_available() is False)"


def bucket(rows: int) -> int:
    """The smallest bucket that holds `rows` (1 <= rows <= BUCKETS[-1])."""
    return next(size for size in BUCKETS if size >= rows)


class CudaTorchVariant(TorchModuleVariant):
    """A channels-last module in its own dtype on one device. `padded` (a compiled module replayed as
    CUDA graphs): each batch is padded to its bucket, and every call runs on the variant's own thread."""

    def __init__(self, backend: str, module: torch.nn.Module, device: str, *, padded: bool) -> None:
        grad_mode = "no_grad" if padded else "inference"  # inductor's frozen graphs want no_grad
        super().__init__(backend, "fp16", module, 0.0, device=device, channels_last=True, grad_mode=grad_mode)
        self.dtype = next(module.parameters()).dtype
        self.padded = padded
        self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix=backend) if padded else None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self._runner is None:
            return self._predict(batch)
        return self._runner.submit(self._predict, batch).result()

    def warm_up_sizes(self, max_batch: int) -> list[int]:
        """Every bucket a batch of up to max_batch rows runs in, so none compiles on a request."""
        if not self.padded:
            return super().warm_up_sizes(max_batch)
        buckets = sorted({bucket(min(n, BUCKETS[-1])) for n in range(1, max_batch + 1)})
        return [1, 1, *buckets, max_batch]

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        step = BUCKETS[-1]
        parts = [self._run(batch[start : start + step]) for start in range(0, len(batch), step)]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        rows = len(chunk)
        host = np.zeros((bucket(rows) if self.padded else rows, *chunk.shape[1:]), dtype=np.float32)
        host[:rows] = chunk
        inputs = torch.from_numpy(host).to(self.device, dtype=self.dtype, non_blocking=True)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        with self._context():
            if self.padded:  # a new step of CUDA graph trees: the last call's outputs may be reused
                torch.compiler.cudagraph_mark_step_begin()
            out = self.module(inputs)
            self.precision = DTYPE_NAMES.get(out.dtype, str(out.dtype).removeprefix("torch."))
            return out[:rows].float().cpu().numpy()

    def _context(self) -> contextlib.ExitStack:
        stack = super()._context()
        if self.padded:
            import torch._inductor.config as inductor_config

            stack.enter_context(inductor_config.patch(freezing=True))
        return stack


def _fp16_module(model: LoadedModel, ctx: BuildContext, backend: str) -> torch.nn.Module:
    """A private copy of the model's module on the device, fp16, channels-last."""
    module = torch_module_copy(model, ctx, backend)
    return module.half().to(memory_format=torch.channels_last)


class _CudaTorchBackend(Backend):
    precision = "fp16"
    device = "cuda"
    runtime_knobs = TORCH_KNOBS

    def availability(self) -> Availability:
        return Availability(True) if torch.cuda.is_available() else Availability(False, NO_CUDA)


@register
class EagerFp16CudaBackend(_CudaTorchBackend):
    name = "eager-fp16-cuda"
    description = "PyTorch eager on a CUDA GPU: fp16 weights and inputs, channels_last (tensor cores)"

    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        start = time.perf_counter()
        module = _fp16_module(model, ctx, self.name)
        variant = CudaTorchVariant(self.name, module, ctx.device, padded=False)
        variant.predict(ctx.example)  # reads back the precision the device ran
        variant.build_seconds = time.perf_counter() - start
        return variant


@register
class InductorFp16CudaBackend(_CudaTorchBackend):
    name = "inductor-fp16-cuda"
    description = "torch.compile max-autotune on a CUDA GPU: fp16 channels_last, CUDA graphs per batch bucket"
    rebuilt_per_process = True  # compiled in every process (from the shared kernel cache): workers verify it

    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        start = time.perf_counter()
        if ctx.cache_dir is not None:  # the tuned kernels go with the artifact: workers reuse them
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ctx.cache_dir / "inductor"))
        module = _fp16_module(model, ctx, self.name)
        # dynamic=False: one static graph per bucket (CUDA graphs need fixed shapes); the buckets
        # stay within dynamo's recompile limit (8)
        compiled = torch.compile(module, mode=COMPILE_MODE, dynamic=False)
        variant = CudaTorchVariant(self.name, compiled, ctx.device, padded=True)  # type: ignore[arg-type]
        variant.predict(ctx.example)  # compiles batch 1's bucket, reads back the precision
        variant.build_seconds = time.perf_counter() - start
        return variant
