"""The CUDA torch backends without a GPU: they say why they cannot build, and their variant's serving
rules (bucket padding for CUDA graphs, one thread of its own, fp16 read back, warm-up shapes) run on
the CPU with a real module, since the rules are plain torch and numpy."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from deploybench.backends import BackendUnavailableError, all_backends, get_backend
from deploybench.backends.build import build_variant
from deploybench.backends.cuda_torch import BUCKETS, CudaTorchVariant, bucket
from deploybench.config import ModelSpec
from deploybench.study.preview import plan_preview
from deploybench.study.space import MachineShape
from deploybench.study.spec import StudyConfig

CUDA_BACKENDS = ("eager-fp16-cuda", "inductor-fp16-cuda")
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the backends build")


class ShapeRecorder(torch.nn.Module):
    """A small conv net that records each forward's batch size and thread."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(8, 5),
        )
        self.calls: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.shape[0], threading.get_ident()))
        return self.net(x)


def _variant(padded: bool, dtype: torch.dtype = torch.float32) -> tuple[CudaTorchVariant, ShapeRecorder]:
    module = ShapeRecorder().to(dtype).to(memory_format=torch.channels_last).eval()
    return CudaTorchVariant("inductor-fp16-cuda", module, "cpu", padded=padded), module


@needs_no_cuda
@pytest.mark.parametrize("name", CUDA_BACKENDS)
def test_without_cuda_each_says_why_and_never_builds(name: str) -> None:
    assert all_backends()[name].device == "cuda"
    availability = get_backend(name).availability()
    assert not availability.ok and "no CUDA device" in availability.reason
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        build_variant(ModelSpec(source="torchvision:resnet18", weights="random"), name, threads=1)


def test_a_padded_variant_runs_each_batch_in_its_bucket_and_answers_only_its_rows() -> None:
    variant, module = _variant(padded=True)
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((70, 3, 16, 16), dtype=np.float32)
    out = variant.predict(batch)
    assert [size for size, _ in module.calls] == [64, 8]  # 70 rows: 64, then 6 padded to 8
    with torch.inference_mode():
        expected = module.net(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert [bucket(n) for n in (1, 2, 3, 5, 9, 17, 33, 64)] == [1, 2, 4, 8, 16, 32, 64, 64]


def test_every_call_runs_on_the_variants_own_thread_whoever_calls() -> None:
    """CUDA graph trees belong to the thread that recorded them; a worker's stream threads call."""
    variant, module = _variant(padded=True)
    batch = np.zeros((3, 3, 16, 16), np.float32)
    with ThreadPoolExecutor(4) as callers:
        list(callers.map(lambda _: variant.predict(batch), range(12)))
    assert len({thread for _, thread in module.calls}) == 1
    assert threading.get_ident() not in {thread for _, thread in module.calls}
    unpadded, plain = _variant(padded=False)
    unpadded.predict(batch)
    assert plain.calls == [(3, threading.get_ident())]  # eager: no padding, no thread hop


def test_the_server_warms_every_bucket_it_may_form_and_fp16_is_read_back() -> None:
    variant, _ = _variant(padded=True)
    assert variant.warm_up_sizes(16) == [1, 1, 1, 2, 4, 8, 16, 16]
    assert variant.warm_up_sizes(100) == [1, 1, *BUCKETS, 100]
    assert _variant(padded=False)[0].warm_up_sizes(16) == [1, 1, 16]  # as every other variant
    half, _ = _variant(padded=False, dtype=torch.float16)
    out = half.predict(np.ones((2, 3, 16, 16), np.float32))
    assert half.precision == "fp16" and out.dtype == np.float32


def test_a_gpu_machines_plan_lists_them_with_the_gpus_batches() -> None:
    preview = plan_preview(StudyConfig(), MachineShape(cores=4, gpu="NVIDIA L4", gpus=1))
    spaces = {space.backend: space for space in preview.backends}
    for name in CUDA_BACKENDS:
        assert spaces[name].device == "cuda" and spaces[name].candidates > 0
    assert preview.batch_sizes["cuda"] == [1, 2, 4, 8, 16, 32, 64]
    cpu_only = plan_preview(StudyConfig(), MachineShape(cores=4))
    assert not set(CUDA_BACKENDS) & {space.backend for space in cpu_only.backends}
