"""The parity gate: a variant may be ranked only if its logits match eager fp32 on fresh inputs.

Metrics per input, reduced to the worst case, a low percentile or the mean: top-1 agreement, top-5
overlap, cosine similarity of the *centred* logits (each row minus its mean: a large common offset
would otherwise make any two logit vectors look alike), max absolute error and max error relative to
the reference logits' range. Thresholds depend on the precision the variant actually runs.

Random-weight networks have near-flat logits: the reference predicts one class for nearly every
input, or wins by a hair, so top-1 agreement measures noise, not the backend. The gate detects that
and then relies on cosine similarity alone, and says so in the report's notes.
"""

from __future__ import annotations

import numpy as np

from deploybench.backends.base import Variant
from deploybench.config import ParityThresholds
from deploybench.results import ParityReport

DOMINANT_CLASS_LIMIT = 0.5  # one class for half of varied photos: the net is not looking at them
FLAT_MARGIN_LIMIT = 0.05  # median top-1 margin below 5% of the logits' spread: ties decide the argmax
PARITY_CHUNK = 8


def predict_in_chunks(variant: Variant, inputs: np.ndarray, chunk: int = PARITY_CHUNK) -> np.ndarray:
    """Run inputs through a variant in fixed-size chunks (compiled variants see few distinct shapes)."""
    return np.concatenate([variant.predict(inputs[i : i + chunk]) for i in range(0, len(inputs), chunk)])


def precision_limits(precision: str, thresholds: ParityThresholds) -> tuple[float, float, float]:
    """(10th-percentile cosine, worst-input cosine, top-1 agreement) limits for a precision.

    Unknown precision names get the reduced-precision limits.
    """
    t = thresholds
    if precision in ("fp32", "tf32"):
        return t.fp32_min_cosine, t.fp32_min_cosine, t.fp32_min_top1
    if precision.startswith("int") or precision in ("u8s8", "mixed-int8"):
        return t.int8_min_cosine, t.int8_cosine_floor, t.int8_min_top1
    return t.reduced_min_cosine, t.reduced_cosine_floor, t.reduced_min_top1


def _centred_cosine(reference: np.ndarray, output: np.ndarray) -> np.ndarray:
    ref = reference - reference.mean(axis=1, keepdims=True)
    out = output - output.mean(axis=1, keepdims=True)
    denominator = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    return np.where(denominator > 0, (ref * out).sum(axis=1) / np.maximum(denominator, 1e-30), 0.0)


def _top5_overlap(reference: np.ndarray, output: np.ndarray) -> float:
    k = min(5, reference.shape[1])
    ref_top = np.argsort(-reference, axis=1)[:, :k]
    out_top = np.argsort(-output, axis=1)[:, :k]
    overlaps = [len(set(a) & set(b)) / k for a, b in zip(ref_top, out_top, strict=True)]
    return float(np.mean(overlaps))


def flat_logits_reason(reference: np.ndarray) -> str | None:
    """Why top-1 agreement is meaningless on these reference logits, or None when it is meaningful."""
    top1 = reference.argmax(axis=1)
    dominant = np.bincount(top1).max() / len(top1)
    if len(top1) >= 4 and dominant >= DOMINANT_CLASS_LIMIT:
        return f"reference predicts one class for {dominant:.0%} of varied inputs (random weights?)"
    if reference.shape[1] < 2:
        return "a single output: no ranking to compare"
    ordered = np.sort(reference, axis=1)
    margins = ordered[:, -1] - ordered[:, -2]
    spread = float(np.median(reference.std(axis=1)))
    if spread == 0 or float(np.median(margins)) < FLAT_MARGIN_LIMIT * spread:
        return (
            "reference logits are near-flat (median top-1 margin tiny against their spread; random weights?)"
        )
    return None


def compare_logits(
    reference: np.ndarray, output: np.ndarray, precision: str, thresholds: ParityThresholds
) -> ParityReport:
    """Gate one variant's logits against the reference logits on the same inputs."""
    if output.shape != reference.shape:
        return ParityReport(
            verdict="rejected",
            precision=precision,
            inputs=len(reference),
            reason=f"output shape {output.shape} differs from the reference {reference.shape}",
        )
    if not np.isfinite(output).all():
        return ParityReport(
            verdict="rejected",
            precision=precision,
            inputs=len(reference),
            reason="output holds NaN or infinite values",
        )
    abs_err = float(np.abs(output - reference).max())
    scale = float(np.abs(reference).max()) or 1.0
    cosines = _centred_cosine(reference, output)
    report = ParityReport(
        verdict="passed",
        precision=precision,
        inputs=len(reference),
        top1_agreement=float((output.argmax(axis=1) == reference.argmax(axis=1)).mean()),
        top5_overlap=_top5_overlap(reference, output),
        cosine_min=float(cosines.min()),
        cosine_p10=float(np.percentile(cosines, 10)),
        max_abs_err=abs_err,
        max_rel_err=abs_err / scale,
    )
    return _apply_limits(report, reference, thresholds)


def _apply_limits(report: ParityReport, reference: np.ndarray, thresholds: ParityThresholds) -> ParityReport:
    min_cosine, cosine_floor, min_top1 = precision_limits(report.precision, thresholds)
    notes = [
        f"{report.precision} limits: centred cosine p10 >= {min_cosine} and worst input >= {cosine_floor},"
        f" top-1 agreement >= {min_top1}",
        "max_rel_err is the max abs error over the largest reference |logit|",
    ]
    failures = []
    assert report.cosine_min is not None and report.cosine_p10 is not None
    assert report.top1_agreement is not None
    if report.cosine_p10 < min_cosine:
        failures.append(f"cosine p10 {report.cosine_p10:.5f} < {min_cosine}")
    if report.cosine_min < cosine_floor:
        failures.append(f"worst-input cosine {report.cosine_min:.5f} < {cosine_floor}")
    flat = flat_logits_reason(reference)
    if flat:
        notes.append(f"{flat}: top-1 agreement ({report.top1_agreement:.0%}) not gated; cosine decides")
    elif report.top1_agreement < min_top1:
        failures.append(f"top-1 agreement {report.top1_agreement:.1%} < {min_top1:.0%}")
    verdict = "rejected" if failures else "passed"
    return report.model_copy(
        update={"verdict": verdict, "reason": "; ".join(failures) or None, "notes": notes}
    )


def check_parity(
    variant: Variant, inputs: np.ndarray, reference: np.ndarray, thresholds: ParityThresholds | None = None
) -> ParityReport:
    """Run `inputs` through the variant and gate it against `reference` (eager fp32 logits on them)."""
    thresholds = thresholds or ParityThresholds()
    try:
        output = predict_in_chunks(variant, inputs)
    except Exception as exc:  # a variant that cannot run is a failed variant, not a crash
        return ParityReport(
            verdict="rejected",
            precision=variant.precision,
            inputs=len(inputs),
            reason=f"predict failed: {type(exc).__name__}: {exc}",
        )
    return compare_logits(reference, output, variant.precision, thresholds)


def reference_report(inputs: int) -> ParityReport:
    """The eager fp32 variant is the reference itself."""
    return ParityReport(
        verdict="reference", precision="fp32", inputs=inputs, notes=["the reference: eager fp32"]
    )
