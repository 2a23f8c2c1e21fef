"""Labelled accuracy per variant, and whether it differs from eager fp32 on the same images.

top-1 / top-5 on the user's labelled images; the difference from eager in percentage points with a
95% confidence interval for PAIRED proportions (Newcombe's square-and-add method 10, built on
scipy's Wilson score intervals), and McNemar's exact test on the disagreements (a binomial test of
"eager right, variant wrong" against "variant right, eager wrong", scipy.stats.binomtest). Both use
only the images where the two disagree, which is what makes 0.4 pp at n=500 testable at all.
The images are assumed independent; crops of the same photo (as in the bundled set) are not, so
there the interval is narrower than the evidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import stats

from deploybench.inputs.calibration import to_model_input
from deploybench.inputs.labelled import LabelledDataError, LabelledSet
from deploybench.inputs.payload import PayloadError, decode_image
from deploybench.results import AccuracyReport

CONFIDENCE = 0.95
EVAL_BATCH = 8
CACHED_IMAGES = 512  # small sets are preprocessed once per model; larger ones are streamed per variant


@dataclass(frozen=True)
class Outcome:
    """Per image: was the label the top-1 answer, was it among the top 5."""

    top1: np.ndarray
    top5: np.ndarray


def _preprocess(path: object, input_shape: tuple[int, int, int]) -> np.ndarray:
    try:
        return to_model_input(decode_image(path.read_bytes()), input_shape)  # type: ignore[attr-defined]
    except PayloadError as exc:
        raise LabelledDataError(f"{path}: {exc}") from None


class EvalBatches:
    """The labelled images as model inputs, in batches (kept in memory for small sets)."""

    def __init__(self, data: LabelledSet, input_shape: tuple[int, int, int]) -> None:
        self.data, self.input_shape = data, input_shape
        self._cached: list[np.ndarray] | None = None
        if len(data.paths) <= CACHED_IMAGES:
            self._cached = list(self._make())

    def _make(self) -> Iterator[np.ndarray]:
        paths = self.data.paths
        for start in range(0, len(paths), EVAL_BATCH):
            chunk = paths[start : start + EVAL_BATCH]
            yield np.stack([_preprocess(p, self.input_shape) for p in chunk]).astype(np.float32)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self._cached) if self._cached is not None else self._make()


def evaluate(predict: Callable[[np.ndarray], np.ndarray], batches: EvalBatches) -> Outcome:
    """Run every labelled image through `predict` (NCHW float32 -> logits) and score it."""
    labels = np.asarray(batches.data.labels)
    logits = np.concatenate([predict(batch) for batch in batches])
    if labels.max() >= logits.shape[1]:
        bad = batches.data.paths[int(np.argmax(labels >= logits.shape[1]))]
        raise LabelledDataError(f"{bad}: class index {labels.max()} >= the model's {logits.shape[1]} outputs")
    k = min(5, logits.shape[1])
    top5 = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return Outcome(logits.argmax(axis=1) == labels, (top5 == labels[:, None]).any(axis=1))


def evaluate_labelled(
    predict: Callable[[np.ndarray], np.ndarray], data: LabelledSet, input_shape: tuple[int, int, int]
) -> AccuracyReport:
    """top-1 / top-5 of one predictor on a labelled set (no comparison)."""
    outcome = evaluate(predict, EvalBatches(data, input_shape))
    return absolute_report(outcome, data.describe())


def absolute_report(outcome: Outcome, data: str) -> AccuracyReport:
    report = AccuracyReport(
        n=len(outcome.top1), top1=float(outcome.top1.mean()), top5=float(outcome.top5.mean()), data=data
    )
    return report.model_copy(update={"summary": verdict_sentence(report)})


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    interval = stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def paired_difference_interval(
    both: int, only_first: int, only_second: int, neither: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Confidence interval of p1 - p2 for paired binary outcomes (Newcombe 1998, method 10).

    p1 = (both + only_first) / n, p2 = (both + only_second) / n. Wilson intervals of each marginal
    are combined through the correlation phi of the pairs (with Newcombe's correction when
    both*neither > only_first*only_second). Unlike a Wald interval it is not zero-wide when the two
    never disagree: 0 disagreements in 30 images cannot rule out a 10 pp difference.
    """
    n = both + only_first + only_second + neither
    p1, p2 = (both + only_first) / n, (both + only_second) / n
    l1, u1 = wilson(both + only_first, n, confidence)
    l2, u2 = wilson(both + only_second, n, confidence)
    margins = (both + only_first) * (only_second + neither) * (both + only_second) * (only_first + neither)
    cross = both * neither - only_first * only_second
    if cross > 0:
        cross = max(cross - n / 2, 0.0)
    phi = cross / math.sqrt(margins) if margins else 0.0
    lower = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return p1 - p2 - lower, p1 - p2 + upper


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: are the disagreements split unevenly?"""
    discordant = only_first + only_second
    return 1.0 if discordant == 0 else float(stats.binomtest(only_first, discordant, 0.5).pvalue)


def compare(reference: Outcome, variant: Outcome, data: str, alpha: float = 1 - CONFIDENCE) -> AccuracyReport:
    """The variant's accuracy and its top-1 drop against the reference on the same images."""
    ref, var = reference.top1, variant.top1
    both, only_ref = int((ref & var).sum()), int((ref & ~var).sum())
    only_var, neither = int((~ref & var).sum()), int((~ref & ~var).sum())
    low, high = paired_difference_interval(both, only_ref, only_var, neither, 1 - alpha)
    p_value = mcnemar_exact(only_ref, only_var)
    report = absolute_report(variant, data)
    drop = (ref.mean() - var.mean()) * 100
    report = report.model_copy(
        update={
            "reference_top1": float(ref.mean()),
            "reference_top5": float(reference.top5.mean()),
            "drop_pp": float(drop),
            "drop_low_pp": low * 100,
            "drop_high_pp": high * 100,
            "only_reference_right": only_ref,
            "only_variant_right": only_var,
            "p_value": p_value,
            "significant": p_value < alpha,
        }
    )
    return report.model_copy(update={"summary": verdict_sentence(report)})


def verdict_sentence(report: AccuracyReport) -> str:
    """'loses 0.4 pp (drop +0.4 pp, 95% CI [-1.2, +2.0]), not significant at n=500 (McNemar p=0.62; ...)'."""
    if report.drop_pp is None:
        return f"top-1 {report.top1:.1%}, top-5 {report.top5:.1%} at n={report.n} (the reference)"
    verb = "loses" if report.drop_pp > 0 else "gains" if report.drop_pp < 0 else "changes"
    significance = "significant" if report.significant else "not significant"
    return (
        f"{verb} {abs(report.drop_pp):.1f} pp (drop {report.drop_pp:+.1f} pp, 95% CI "
        f"[{report.drop_low_pp:+.1f}, {report.drop_high_pp:+.1f}]), "
        f"{significance} at n={report.n} (McNemar p={report.p_value:.2g}; {report.only_reference_right} "
        f"images only eager got right, {report.only_variant_right} only this variant)"
    )
