"""Each torch backend builds a real model, reports its actual precision and passes the parity gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deploybench.backends.base import get_backend
from deploybench.backends.build import build_variant
from deploybench.config import ParityThresholds
from deploybench.hardware import has_native_bf16
from deploybench.inputs.calibration import parity_inputs
from deploybench.models.loaded import LoadedModel
from deploybench.models.sources import logits_for
from deploybench.variants.parity import check_parity


def skip_unless_available(backend: str) -> None:
    availability = get_backend(backend).availability()
    if not availability.ok:
        pytest.skip(availability.reason)


def test_bf16_autocast_is_offered_only_where_the_cpu_computes_in_bf16() -> None:
    availability = get_backend("eager-bf16").availability()
    native = has_native_bf16() or torch.cuda.is_available()
    assert availability.ok == native
    if not native:
        assert "no bf16 instructions" in availability.reason


@pytest.mark.parametrize(
    ("backend", "precision"),
    [("eager", "fp32"), ("eager-channels-last", "fp32"), ("eager-bf16", "bf16"), ("torchscript", "fp32")],
)
def test_backend_passes_parity_on_trained_net(
    backend: str,
    precision: str,
    effnet: LoadedModel,
    effnet_inputs: np.ndarray,
    effnet_reference: np.ndarray,
    cache_root: Path,
) -> None:
    skip_unless_available(backend)
    variant, _ = build_variant(effnet.spec, backend, threads=2, model=effnet, cache_dir=cache_root)
    assert variant.precision == precision
    report = check_parity(variant, effnet_inputs, effnet_reference, ParityThresholds())
    assert report.verdict == "passed", report.reason
    assert report.top1_agreement is not None and report.top1_agreement >= 0.9
    assert not any("not gated" in note for note in report.notes)  # a trained net: top-1 is gated


def test_torchscript_caches_its_frozen_module(tiny: LoadedModel, cache_root: Path) -> None:
    first, _ = build_variant(tiny.spec, "torchscript", threads=1, model=tiny, cache_dir=cache_root)
    assert first.artifact_bytes and first.artifact_bytes > 0
    assert list(cache_root.rglob("frozen.pt"))
    again, _ = build_variant(tiny.spec, "torchscript", threads=1, model=tiny, cache_dir=cache_root)
    batch = parity_inputs(count=4)
    np.testing.assert_allclose(again.predict(batch), first.predict(batch), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_inductor_compiles_with_freezing_and_passes(tiny: LoadedModel, cache_root: Path) -> None:
    variant, _ = build_variant(tiny.spec, "inductor", threads=2, model=tiny, cache_dir=cache_root)
    assert variant.precision == "fp32"
    assert variant.build_seconds > 0  # the compile happened inside build, on the example batch
    inputs = parity_inputs(count=8)
    report = check_parity(variant, inputs, logits_for(tiny, inputs))
    assert report.verdict == "passed", report.reason


def test_build_does_not_mutate_the_reference(tiny: LoadedModel, cache_root: Path) -> None:
    inputs = parity_inputs(count=2)
    before = logits_for(tiny, inputs)
    build_variant(tiny.spec, "eager-channels-last", threads=1, model=tiny, cache_dir=cache_root)
    if get_backend("eager-bf16").availability().ok:
        build_variant(tiny.spec, "eager-bf16", threads=1, model=tiny, cache_dir=cache_root)
    np.testing.assert_array_equal(logits_for(tiny, inputs), before)


def test_eager_runs_on_the_device_it_is_built_for(tiny: LoadedModel, cache_root: Path) -> None:
    """device_check times eager on the GPU as every variant's reference: built for another device,
    eager moves a copy there (meta stands in for cuda here) and leaves the shared module on the CPU."""
    variant, _ = build_variant(tiny.spec, "eager", threads=1, model=tiny, cache_dir=cache_root, device="meta")
    assert variant.device == "meta"
    assert {p.device.type for p in variant.module.parameters()} == {"meta"}
    assert {p.device.type for p in tiny.module.parameters()} == {"cpu"}
    cpu, _ = build_variant(tiny.spec, "eager", threads=1, model=tiny, cache_dir=cache_root)
    assert cpu.module is tiny.module and cpu.device == "cpu"  # on the CPU nothing is copied


def test_build_fills_calibration_and_a_keyed_cache_dir(tiny: LoadedModel, cache_root: Path) -> None:
    from deploybench.backends.base import BuildContext, Variant, register
    from deploybench.backends.eager import EagerBackend

    seen: list[BuildContext] = []

    @register
    class Recording(EagerBackend):
        name = "test-recording"
        needs_calibration = True  # only backends that ask get the (costly) calibration set

        def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
            seen.append(ctx)
            return super().build(model, ctx)

    try:
        build_variant(tiny.spec, "test-recording", threads=1, model=tiny, cache_dir=cache_root)
    finally:
        from deploybench.backends.base import _REGISTRY

        _REGISTRY.pop("test-recording")
    ctx = seen[0]
    images = ctx.calibration.images()  # made on first use: a cached int8 artifact needs only the digest
    assert len(images) >= 64 and images[0].shape == (3, 224, 224)
    assert ctx.cache_dir is not None and ctx.cache_dir.is_dir() and cache_root in ctx.cache_dir.parents
