"""The parity gate: a variant may be ranked only if its logits match eager fp32 on fresh inputs.

What is compared (per input, then reduced to the worst input, a low percentile or the mean):
- cosine similarity of the INPUT-DEPENDENT part of the logits: the reference's mean over all inputs
  is subtracted from both outputs, then each row is centred (softmax ignores a per-row constant).
  A part common to every input would otherwise make any two outputs look alike: on a random network
  it is nearly all of the logits, and a variant returning the same logits for every image, or the
  first row of each batch, passed the old row-centred cosine. When the reference's outputs barely
  depend on the input at all, the gate refuses to rank (nothing can be verified);
- max_rel_err: the largest error of any logit, after removing each row's mean error, over that
  input's logit range. Cosine is blind to scale (2x logits have cosine 1), this is not;
- top-1 agreement and top-5 overlap, top-1 gated unless the reference's own argmax is decided by
  ties on a many-class net (random weights); binary and few-class classifiers are always gated;
- max_abs_err is reported, not gated: it has no scale of its own.
Every batch size the server may form is verified (1..max batch, odd sizes included): the rows
produced at each size are gated together, and each must match the variant's own output for that
input at the main batch size (batch_consistency); a failure names the batch sizes it happened at.
Limits depend on the precision the variant actually runs (config.ParityThresholds says why). With
floor_only, a reduced-precision variant of a random-weight model is held only to the sanity floor
(and every structural check): its backend's numerics are judged on a trained stand-in
(backends/stand_in.py), since a random network amplifies correct rounding past any trained limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from deploybench.backends.base import Variant
from deploybench.config import ParityThresholds
from deploybench.results import ParityReport

DOMINANT_CLASS_LIMIT = 0.5  # one class for half of varied photos: the net is not looking at them
FLAT_MARGIN_LIMIT = 0.05  # median top-1 margin below 5% of the logits' spread: ties decide the argmax
FEW_CLASSES = 10  # up to this many classes, a dominant class is plausible and top-1 is always gated
PARITY_CHUNK = 8
FULL_PRECISIONS = ("fp32", "tf32")


def predict_in_chunks(variant: Variant, inputs: np.ndarray, chunk: int = PARITY_CHUNK) -> np.ndarray:
    """Run inputs through a variant in fixed-size chunks (compiled variants see few distinct shapes)."""
    return np.concatenate([variant.predict(inputs[i : i + chunk]) for i in range(0, len(inputs), chunk)])


def precision_limits(precision: str, thresholds: ParityThresholds) -> tuple[float, float, float, float]:
    """(10th-percentile cosine, worst-input cosine, top-1 agreement, max relative error) for a precision.

    Unknown precision names get the reduced-precision limits.
    """
    t = thresholds
    if precision in FULL_PRECISIONS:
        return t.fp32_min_cosine, t.fp32_min_cosine, t.fp32_min_top1, t.fp32_max_rel_err
    if precision.startswith("int") or precision in ("u8s8", "mixed-int8"):
        return t.int8_min_cosine, t.int8_cosine_floor, t.int8_min_top1, t.int8_max_rel_err
    return t.reduced_min_cosine, t.reduced_cosine_floor, t.reduced_min_top1, t.reduced_max_rel_err


def _row_centred(logits: np.ndarray) -> np.ndarray:
    return logits - logits.mean(axis=1, keepdims=True)


def input_variation(reference: np.ndarray) -> float:
    """Fraction of the reference's (row-centred) logit energy that differs between inputs (0..1)."""
    centred = _row_centred(reference.astype(np.float64))
    varying = centred - centred.mean(axis=0, keepdims=True)
    total = float((centred**2).sum())
    return float((varying**2).sum()) / total if total > 0 else 0.0


def input_dependent_cosine(
    reference: np.ndarray, output: np.ndarray, common: np.ndarray | None = None
) -> np.ndarray:
    """Per-row cosine of the logits after removing the reference's mean over inputs (`common`)."""
    common = reference.mean(axis=0, keepdims=True) if common is None else common
    ref = _row_centred(reference.astype(np.float64) - common)
    out = _row_centred(output.astype(np.float64) - common)
    denominator = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    return np.where(denominator > 0, (ref * out).sum(axis=1) / np.maximum(denominator, 1e-300), 0.0)


def relative_errors(reference: np.ndarray, output: np.ndarray) -> np.ndarray:
    """Per-row largest logit error (each row's mean error removed) over that row's logit range."""
    error = _row_centred(output.astype(np.float64) - reference)
    spread = reference.max(axis=1) - reference.min(axis=1)
    return np.abs(error).max(axis=1) / np.maximum(spread, 1e-12)


def _top5_overlap(reference: np.ndarray, output: np.ndarray) -> float:
    k = min(5, reference.shape[1])
    ref_top = np.argsort(-reference, axis=1)[:, :k]
    out_top = np.argsort(-output, axis=1)[:, :k]
    overlaps = [len(set(a) & set(b)) / k for a, b in zip(ref_top, out_top, strict=True)]
    return float(np.mean(overlaps))


def flat_logits_reason(reference: np.ndarray) -> str | None:
    """Why top-1 agreement is meaningless on these reference logits, or None when it is meaningful."""
    classes = reference.shape[1]
    if classes < 2:
        return "a single output: no ranking to compare"
    if classes <= FEW_CLASSES:
        return None  # binary and few-class classifiers: a dominant class is plausible, top-1 is gated
    top1 = reference.argmax(axis=1)
    dominant = np.bincount(top1).max() / len(top1)
    if len(top1) >= 4 and dominant >= DOMINANT_CLASS_LIMIT:
        return f"reference predicts one class for {dominant:.0%} of varied inputs (random weights?)"
    ordered = np.sort(reference, axis=1)
    margins = ordered[:, -1] - ordered[:, -2]
    spread = float(np.median(reference.std(axis=1)))
    if spread == 0 or float(np.median(margins)) < FLAT_MARGIN_LIMIT * spread:
        return (
            "reference logits are near-flat (median top-1 margin tiny against their spread; random weights?)"
        )
    return None


def batch_consistency(output: np.ndarray, rows: np.ndarray, count: int) -> np.ndarray:
    """Per output row: the cosine of its input-dependent logits with the same input's output in the
    main pass (the first `count` rows, each input once), both taken against the variant's own mean."""
    main = output[:count].astype(np.float64)
    cosines = input_dependent_cosine(main[rows], output, main.mean(axis=0, keepdims=True))
    return np.where((main[rows] == output).all(axis=1), 1.0, cosines)  # identical rows: consistent


def _rejected(precision: str, inputs: int, reason: str) -> ParityReport:
    return ParityReport(verdict="rejected", precision=precision, inputs=inputs, reason=reason)


def compare_logits(
    reference: np.ndarray,
    output: np.ndarray,
    precision: str,
    thresholds: ParityThresholds,
    row_batch_sizes: np.ndarray | None = None,
    common: np.ndarray | None = None,
    consistency: np.ndarray | None = None,
    floor_only: bool = False,
) -> ParityReport:
    """Gate one variant's logits against the reference logits on the same inputs.

    row_batch_sizes: the batch size each row was produced at (named in a failure); common: the
    reference's mean over the distinct inputs (default: over these rows); consistency: each row's
    batch_consistency; floor_only: the sanity floor instead of the trained limits (module docstring).
    """
    if output.shape != reference.shape:
        return _rejected(
            precision,
            len(reference),
            f"output shape {output.shape} differs from the reference {reference.shape}",
        )
    if not np.isfinite(output).all():
        return _rejected(precision, len(reference), "output holds NaN or infinite values")
    cosines = input_dependent_cosine(reference, output, common)
    rel = relative_errors(reference, output)
    sizes = np.full(len(reference), 0) if row_batch_sizes is None else row_batch_sizes
    consistency = np.ones(len(reference)) if consistency is None else consistency
    report = ParityReport(
        verdict="passed",
        precision=precision,
        inputs=len(reference),
        batch_sizes=sorted({int(s) for s in sizes if s}),
        top1_agreement=float((output.argmax(axis=1) == reference.argmax(axis=1)).mean()),
        top5_overlap=_top5_overlap(reference, output),
        cosine_min=float(cosines.min()),
        cosine_p10=float(np.percentile(cosines, 10)),
        max_abs_err=float(np.abs(output - reference).max()),
        max_rel_err=float(rel.max()),
        input_variation=input_variation(reference),
        batch_consistency=float(consistency.min()),
    )
    rows = _Rows(cosines, rel, sizes, consistency)
    if floor_only:
        return _apply_floor(report, thresholds, rows)
    return _apply_limits(report, reference, thresholds, rows)


def _at_sizes(bad: np.ndarray, sizes: np.ndarray) -> str:
    named = sorted({int(s) for s in sizes[bad] if s})
    return f" (batch size {', '.join(map(str, named))})" if named else ""


@dataclass(frozen=True)
class _Rows:
    """Per-row figures of one comparison: cosine, relative error, batch size, batch consistency."""

    cosines: np.ndarray
    rel: np.ndarray
    sizes: np.ndarray
    consistency: np.ndarray


def _structural_failures(report: ParityReport, thresholds: ParityThresholds, rows: _Rows) -> list[str]:
    """What no variant may fail whatever its precision: a verifiable reference, batch-size consistency."""
    failures = []
    if (report.input_variation or 0.0) < thresholds.min_input_variation:
        failures.append(
            f"the reference's outputs barely depend on the input ({report.input_variation:.2e} of the logit"
            f" variance varies between inputs < {thresholds.min_input_variation:g}): nothing can be verified"
        )
    limit = thresholds.min_batch_consistency
    if report.batch_consistency is not None and report.batch_consistency < limit:
        where = _at_sizes(rows.consistency < limit, rows.sizes)
        failures.append(
            f"outputs change with the batch size (worst input's cosine to its own output at the main batch"
            f" size {report.batch_consistency:.4f} < {limit}){where}"
        )
    return failures


def _failures(report: ParityReport, thresholds: ParityThresholds, rows: _Rows, gate_top1: bool) -> list[str]:
    min_cosine, cosine_floor, min_top1, max_rel = precision_limits(report.precision, thresholds)
    cosines, rel, sizes = rows.cosines, rows.rel, rows.sizes
    failures = _structural_failures(report, thresholds, rows)
    if report.cosine_p10 is not None and report.cosine_p10 < min_cosine:
        failures.append(f"cosine p10 {report.cosine_p10:.5f} < {min_cosine}")
    if report.cosine_min is not None and report.cosine_min < cosine_floor:
        where = _at_sizes(cosines < cosine_floor, sizes)
        failures.append(f"worst-input cosine {report.cosine_min:.5f} < {cosine_floor}{where}")
    if report.max_rel_err is not None and report.max_rel_err > max_rel:
        failures.append(f"max_rel_err {report.max_rel_err:.3g} > {max_rel}{_at_sizes(rel > max_rel, sizes)}")
    if gate_top1 and report.top1_agreement is not None and report.top1_agreement < min_top1:
        failures.append(f"top-1 agreement {report.top1_agreement:.1%} < {min_top1:.0%}")
    return failures


def _judged(report: ParityReport, failures: list[str], notes: list[str]) -> ParityReport:
    verdict = "rejected" if failures else "passed"
    return report.model_copy(
        update={"verdict": verdict, "reason": "; ".join(failures) or None, "notes": notes}
    )


def _apply_floor(report: ParityReport, thresholds: ParityThresholds, rows: _Rows) -> ParityReport:
    """The sanity floor of a reduced-precision variant of a random-weight model (see the module doc)."""
    floor = thresholds.random_min_cosine
    failures = _structural_failures(report, thresholds, rows)
    if report.cosine_p10 is not None and report.cosine_p10 <= floor:
        failures.append(f"cosine p10 {report.cosine_p10:.5f} <= sanity floor {floor:g}")
    notes = [
        f"random weights, {report.precision}: this artifact held to the sanity floor (input-dependent cosine"
        f" p10 > {floor:g}, every batch size consistent >= {thresholds.min_batch_consistency}); a random"
        " network amplifies correct rounding past the trained limits",
        "max_abs_err is reported only: it has no scale of its own",
    ]
    return _judged(report, failures, notes)


def _apply_limits(
    report: ParityReport, reference: np.ndarray, thresholds: ParityThresholds, rows: _Rows
) -> ParityReport:
    min_cosine, cosine_floor, min_top1, max_rel = precision_limits(report.precision, thresholds)
    notes = [
        f"{report.precision} limits: input-dependent cosine p10 >= {min_cosine} and worst input >="
        f" {cosine_floor}, max_rel_err <= {max_rel}, top-1 agreement >= {min_top1}",
        "max_abs_err is reported only: it has no scale of its own",
    ]
    flat = flat_logits_reason(reference)
    if flat:
        notes.append(f"{flat}: top-1 agreement ({report.top1_agreement:.0%}) not gated; cosine decides")
    return _judged(report, _failures(report, thresholds, rows, gate_top1=flat is None), notes)


def batch_rows(count: int, sizes: Iterable[int]) -> list[tuple[int, list[int]]]:
    """(batch size, input rows) for one batch of every size, cycling through the inputs."""
    plan, offset = [], 0
    for size in sizes:
        plan.append((size, [(offset + j) % count for j in range(size)]))
        offset += size
    return plan


def run_at_batch_sizes(
    variant: Variant, inputs: np.ndarray, sizes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(outputs, input row of each output, batch size of each output): every input once in chunks of
    the largest size (at most the number of inputs), then one batch of each other size (inputs repeated
    when the batch is larger than the set)."""
    main = min(max(sizes), len(inputs))
    outputs = [predict_in_chunks(variant, inputs, main)]
    rows = [np.arange(len(inputs))]
    chunk_sizes = [min(main, len(inputs) - start) for start in range(0, len(inputs), main)]
    row_sizes = [np.repeat(chunk_sizes, chunk_sizes)]
    for size, picked in batch_rows(len(inputs), sorted(set(sizes) - {main})):
        outputs.append(variant.predict(inputs[picked]))
        rows.append(np.array(picked))
        row_sizes.append(np.full(size, size))
    return np.concatenate(outputs), np.concatenate(rows), np.concatenate(row_sizes)


def check_parity(
    variant: Variant,
    inputs: np.ndarray,
    reference: np.ndarray,
    thresholds: ParityThresholds | None = None,
    batch_sizes: Sequence[int] = (PARITY_CHUNK,),
    floor_only: bool = False,
) -> ParityReport:
    """Run `inputs` through the variant at every batch size given and gate it against `reference`
    (eager fp32 logits on the inputs); floor_only: the sanity floor instead of the trained limits."""
    thresholds = thresholds or ParityThresholds()
    try:
        output, rows, sizes = run_at_batch_sizes(variant, inputs, list(batch_sizes))
    except Exception as exc:  # a variant that cannot run is a failed variant, not a crash
        return _rejected(variant.precision, len(inputs), f"predict failed: {type(exc).__name__}: {exc}")
    common = reference.mean(axis=0, keepdims=True)
    consistency = batch_consistency(output, rows, len(inputs))
    report = compare_logits(
        reference[rows], output, variant.precision, thresholds, sizes, common, consistency, floor_only
    )
    return report.model_copy(update={"inputs": len(inputs)})


def reference_report(inputs: int) -> ParityReport:
    """The eager fp32 variant is the reference itself."""
    return ParityReport(
        verdict="reference", precision="fp32", inputs=inputs, notes=["the reference: eager fp32"]
    )


def served_batch_sizes(largest: int) -> list[int]:
    """Every batch size a server with this max_batch_size may form."""
    return list(range(1, max(1, largest) + 1))
