"""The parity gate: passes faithful variants, rejects broken ones, and knows when top-1 means nothing."""

from __future__ import annotations

import numpy as np

from deploybench.backends.base import Variant
from deploybench.backends.eager import TorchModuleVariant
from deploybench.config import ParityThresholds
from deploybench.models.loaded import LoadedModel
from deploybench.variants.parity import check_parity, compare_logits, flat_logits_reason


class _Perturbed(Variant):
    """A real variant whose output is damaged the way a buggy backend would damage it."""

    def __init__(self, inner: Variant, damage: str, precision: str = "fp32") -> None:
        self.inner, self.damage = inner, damage
        self.backend, self.precision, self.versions = "broken", precision, {}

    def predict(self, batch: np.ndarray) -> np.ndarray:
        out = self.inner.predict(batch)
        if self.damage == "shuffle":  # e.g. a wrong output binding: classes permuted
            return np.roll(out, 1, axis=1)
        if self.damage == "nan":
            out[0, 0] = np.nan
            return out
        rng = np.random.default_rng(0)  # e.g. bad quantisation scales: large errors
        scale = 3.0 if self.damage == "heavy-noise" else 1.0
        return out + rng.normal(0, scale * out.std(), out.shape).astype(np.float32)


def _eager(model: LoadedModel) -> Variant:
    return TorchModuleVariant("eager", "fp32", model.module, 0.0)


def test_gate_rejects_broken_variants(effnet: LoadedModel, effnet_inputs: np.ndarray,
                                      effnet_reference: np.ndarray) -> None:  # fmt: skip
    for damage in ("shuffle", "noise", "nan"):
        report = check_parity(_Perturbed(_eager(effnet), damage), effnet_inputs, effnet_reference)
        assert report.verdict == "rejected", damage
        assert report.reason


def test_gate_rejects_noisy_int8_with_int8_thresholds_too(
    effnet: LoadedModel, effnet_inputs: np.ndarray, effnet_reference: np.ndarray
) -> None:
    """Noise 3x the logits' spread: well beyond the noisiest correct int8 build measured (EfficientNet-
    Lite1 onnxruntime-int8: input-dependent cosine p10 0.67, max_rel_err 0.40). Noise equal to the
    spread is within what a correct int8 build does, and the int8 limits let it pass."""
    broken = _Perturbed(_eager(effnet), "heavy-noise", precision="int8")
    report = check_parity(broken, effnet_inputs, effnet_reference, ParityThresholds())
    assert report.verdict == "rejected"
    assert "cosine" in (report.reason or "")


def test_gate_passes_the_reference_itself(effnet: LoadedModel, effnet_inputs: np.ndarray,
                                          effnet_reference: np.ndarray) -> None:  # fmt: skip
    report = check_parity(_eager(effnet), effnet_inputs, effnet_reference)
    assert report.verdict == "passed"
    assert report.top1_agreement == 1.0 and report.top5_overlap == 1.0
    assert report.cosine_min is not None and report.cosine_min > 0.99999


def test_flat_reference_is_detected_and_top1_is_not_gated() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, (32, 1000)).astype(np.float32)
    reference[:, 7] += 50  # a random net: one class wins for every input
    output = reference + rng.normal(0, 0.01, reference.shape).astype(np.float32)
    output[:, 7] -= 50  # and the variant picks another class everywhere, yet the logits barely differ
    output[:, 7] += 49.99
    assert flat_logits_reason(reference) is not None
    report = compare_logits(reference, output, "bf16", ParityThresholds())
    assert report.verdict == "passed"
    assert any("not gated" in note for note in report.notes)


def test_cosine_is_centred_so_a_common_offset_cannot_hide_errors() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(0, 1, (8, 1000)).astype(np.float32) + 100.0
    unrelated = rng.normal(0, 1, (8, 1000)).astype(np.float32) + 100.0
    report = compare_logits(reference, unrelated, "fp32", ParityThresholds())
    assert report.verdict == "rejected"
    assert report.cosine_min is not None and report.cosine_min < 0.5


def test_shape_mismatch_is_rejected() -> None:
    report = compare_logits(np.zeros((4, 10)), np.zeros((4, 9)), "fp32", ParityThresholds())
    assert report.verdict == "rejected" and "shape" in (report.reason or "")
