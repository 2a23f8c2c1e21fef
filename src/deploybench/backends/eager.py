"""PyTorch eager fp32: the reference every other variant is checked against."""

from __future__ import annotations

import time

import numpy as np
import torch

from deploybench.backends.base import Availability, Backend, BuildContext, Variant, register
from deploybench.models import LoadedModel


class TorchModuleVariant(Variant):
    """Any variant that is a callable torch module run under inference_mode."""

    def __init__(self, backend: str, precision: str, module: torch.nn.Module, build_seconds: float) -> None:
        self.backend = backend
        self.precision = precision
        self.module = module
        self.build_seconds = build_seconds
        self.versions = {"torch": torch.__version__}

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        return out.float().numpy()


@register
class EagerBackend(Backend):
    name = "eager"
    precision = "fp32"
    description = "PyTorch eager, fp32 (the reference)"

    def availability(self) -> Availability:
        return Availability(True)

    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        start = time.perf_counter()
        torch.set_num_threads(ctx.threads)
        return TorchModuleVariant(self.name, "fp32", model.module, time.perf_counter() - start)
