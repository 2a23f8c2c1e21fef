"""Reduced precision on random weights: the backend judged on the trained stand-in, the artifact on the floor.

A random network amplifies correct int8 rounding past the trained limits (random MobileNetV3-Small:
a correct onnxruntime-int8 build agrees on 57% of top-1 answers, below the 60% int8 limit), so the
model alone could never recommend int8. Broken builds must still fail on the model itself (a
zeros-calibrated int8 build of the default model: tests/variants/test_gate_on_models.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deploybench.backends import Variant
from deploybench.backends.build import build_variant
from deploybench.backends.eager import TorchModuleVariant
from deploybench.cli import app
from deploybench.config import ModelSpec, ParityThresholds
from deploybench.inputs.calibration import parity_inputs
from deploybench.models.loaded import LoadedModel
from deploybench.models.sources import load_model, logits_for
from deploybench.variants.stand_in import JUDGED_ON, StandIn, judge_variant, needs_stand_in
from deploybench.variants.verify import VariantsReport, evaluate_variants

RANDOM_SMALL = ModelSpec(source="torchvision:mobilenet_v3_small", weights="random")
SIZES = [1, 2, 3]
INT8 = "onnxruntime-int8"


@pytest.mark.slow
def test_a_correct_int8_build_of_a_random_model_passes_judged_on_the_stand_in(
    shared_cache_root: Path,
) -> None:
    out = shared_cache_root / "variants.json"
    result = CliRunner().invoke(app, [
        "variants", "--model", RANDOM_SMALL.source, "--weights", "random", "--backends", INT8,
        "--batch", "1,3", "--budget", "1", "--cache-dir", str(shared_cache_root), "--json", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = VariantsReport.model_validate_json(out.read_text())
    eager, int8 = report.variants
    parity = int8.parity
    assert parity is not None and parity.precision == "int8"
    assert parity.verdict == "passed", parity.reason
    assert eager.parity is not None and eager.parity.judged_on is None  # the reference is the model's
    assert parity.judged_on == JUDGED_ON and parity.label == f"passed (judged on {JUDGED_ON})"
    assert parity.stand_in is not None and parity.stand_in.verdict == "passed"
    assert parity.stand_in.model is not None and "efficientnet-lite0" in parity.stand_in.model
    assert parity.stand_in.batch_sizes == SIZES  # the stand-in is gated at the same batch sizes
    assert parity.cosine_p10 is not None and parity.cosine_p10 > ParityThresholds().random_min_cosine
    assert INT8 in report.stand_in
    printed = " ".join(result.output.split())  # Rich wraps long lines
    assert f"judged on {JUDGED_ON}" in printed and f"on {parity.stand_in.model} (trained limits" in printed


class _Broken(Variant):
    """A correct build's output spoiled the way real bugs spoil it, under the same backend name."""

    def __init__(self, inner: Variant, mode: str) -> None:
        self.inner, self.mode = inner, mode
        self.backend, self.precision, self.versions = inner.backend, inner.precision, {}
        self.rng = np.random.default_rng(0)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        out = self.inner.predict(batch)
        if self.mode == "rows-shifted":
            return np.roll(out, 1, axis=0)
        if self.mode == "constant":
            return np.repeat(self.inner.predict(np.zeros_like(batch[:1])), len(out), axis=0)
        return self.rng.normal(out.mean(), out.std(), out.shape).astype(np.float32)  # noise


@pytest.fixture(scope="module")
def random_small(shared_cache_root: Path) -> tuple[LoadedModel, np.ndarray, np.ndarray, Variant, StandIn]:
    """The random model, its parity inputs and eager logits, a correct int8 build, and a stand-in."""
    model = load_model(RANDOM_SMALL, shared_cache_root)
    inputs = parity_inputs(model.input_shape, 16)
    variant, _ = build_variant(RANDOM_SMALL, INT8, threads=2, cache_dir=shared_cache_root, model=model)
    return (
        model,
        inputs,
        logits_for(model, inputs),
        variant,
        StandIn(ParityThresholds(), SIZES, shared_cache_root),
    )


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rows-shifted", "constant", "noise"])
def test_a_broken_artifact_fails_on_the_model_although_its_backend_passed_on_the_stand_in(
    random_small: tuple[LoadedModel, np.ndarray, np.ndarray, Variant, StandIn], mode: str
) -> None:
    _, inputs, reference, variant, stand_in = random_small
    report = judge_variant(_Broken(variant, mode), inputs, reference, ParityThresholds(), SIZES, stand_in, 2)
    assert report.judged_on == JUDGED_ON
    assert report.stand_in is not None and report.stand_in.verdict == "passed"
    assert report.verdict == "rejected" and "on this model (sanity floor)" in (report.reason or "")


def test_full_precision_on_random_weights_is_judged_on_the_model_itself(
    random_small: tuple[LoadedModel, np.ndarray, np.ndarray, Variant, StandIn],
) -> None:
    model, inputs, reference, _, stand_in = random_small
    eager = TorchModuleVariant("eager", "fp32", model.module, 0.0)
    report = judge_variant(eager, inputs, reference, ParityThresholds(), SIZES, stand_in, 2)
    assert report.verdict == "passed" and report.judged_on is None and report.stand_in is None


@pytest.mark.slow
def test_trained_weights_never_use_the_stand_in(shared_cache_root: Path) -> None:
    assert not needs_stand_in("pretrained", "int8") and needs_stand_in("random", "int8")
    report = evaluate_variants(
        ModelSpec(source="efficientnet-lite0"),
        [INT8],
        batch_sizes=(1,),
        time_budget_s=1.0,
        cache_dir=shared_cache_root,
    )
    assert report.weights == "pretrained" and report.stand_in == ""
    parity = report.variants[1].parity
    assert parity is not None and parity.verdict == "passed"
    assert parity.judged_on is None and parity.stand_in is None and parity.label == "passed"
