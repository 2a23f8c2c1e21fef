"""Turn trial records into one recommendation: filter by constraints, rank, Pareto front, reasons.

One rule for every trial: it is judged at one operating point, the highest-throughput load point
that is trusted (valid, stable, the client kept up: LoadPoint.trusted), nearly error-free and,
when a p99 budget is given, whose early-stopping verdict for that budget is "met"; without a
budget, the peak. A raw p99 never makes an SLO claim: a point of a few dozen requests cannot.

Ties are broken deterministically, in this order (values compared at 6 significant digits):
  objective cost:       cost per 1M, then p99, then throughput (higher first), then
  objective throughput: throughput (higher first), then p99, then cost per 1M, then
  objective p99:        p99, then cost per 1M, then throughput (higher first), then
  ...all three:         fewer cores used (workers x threads), lower peak RSS, then the label (A-Z).
Beyond those exact ties, the winner must beat the runner-up beyond the noise: when their 95%
intervals on the objective overlap (and the estimates are within 5%) they are statistically tied,
and the tie rule (deploybench.recommend.ties) prefers the simpler, cheaper configuration where the data show
it within 5% of the best estimate. A trial rejected by
the parity gate is never recommended;
with `max_accuracy_drop` (percentage points of labelled top-1 against eager) neither is one that loses
more, nor, with `reject_significant_drop`, one whose drop is statistically significant (McNemar), nor
one whose accuracy was not measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from deploybench.config import Constraints
from deploybench.load import decode_histogram, slo_verdict
from deploybench.pricing.catalogue import (
    CapacityPlan,
    PriceCatalogue,
    PriceOverride,
    UnknownInstanceError,
    cost_per_million,
    plan_capacity,
    transactions_per_hour,
)
from deploybench.recommend.baseline import compare_with_baseline, pct_change
from deploybench.recommend.records import Evaluation, Recommendation
from deploybench.recommend.ties import break_statistical_ties
from deploybench.results import AccuracyReport, Interval, LoadPoint, SloVerdict, TrialRecord

MAX_ERROR_RATE = 0.01  # a point where more than 1% of requests failed is not an operating point

__all__ = ["Evaluation", "Recommendation", "recommend", "select_point"]


def _usable(point: LoadPoint) -> bool:
    total = point.ok + point.error_count
    errors_ok = total > 0 and point.error_count / total <= MAX_ERROR_RATE
    return point.trusted and errors_ok and point.throughput_rps > 0


def _usable_indices(points: Sequence[LoadPoint]) -> list[int]:
    return [i for i, p in enumerate(points) if _usable(p)]


def verdict_for(point: LoadPoint, p99_ms: float) -> SloVerdict:
    """The point's early-stopping verdict for this p99 bound: recorded, else from its raw histogram."""
    if point.slo is not None and point.slo.bound_ms == p99_ms and point.slo.percentile == 99.0:
        return point.slo
    return slo_verdict(decode_histogram(point.histogram or ""), point.error_count, p99_ms)


def _unusable_reason(points: Sequence[LoadPoint]) -> str:
    if all(p.invalid_reason for p in points):
        return f"invalid measurement at every load ({points[0].invalid_reason})"
    if all(p.client_bound for p in points):
        return "client-bound measurement at every load (the load generator, not the server, was the limit)"
    counts = {
        "invalid": sum(p.invalid_reason is not None for p in points),
        "client-bound": sum(p.client_bound for p in points),
        "unstable": sum(not p.stable for p in points),
        "with errors": sum(
            p.ok == 0 or p.error_count / max(1, p.ok + p.error_count) > MAX_ERROR_RATE for p in points
        ),
    }
    detail = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
    return f"no usable load point ({detail})"


def _slo_reason(points: Sequence[LoadPoint], verdicts: list[SloVerdict], p99_ms: float) -> str:
    """Why no usable point meets the budget: plainly missed, or too few requests to tell."""
    best = min(p.latency.p99_ms for p in points)
    if best > p99_ms or any(v.status == "missed" for v in verdicts):
        return f"SLO missed at every load (best p99 {best:.1f} ms > {p99_ms:g} ms)"
    largest = max(verdicts, key=lambda v: v.requests)
    return (
        f"SLO not verifiable: no point's early-stopping verdict could claim p99 <= {p99_ms:g} ms "
        f"(largest holds {largest.requests} requests, {largest.required_requests} needed; raw best "
        f"p99 {best:.1f} ms)"
    )


def select_point(trial: TrialRecord, p99_ms: float | None) -> tuple[int | None, str | None]:
    """(index of the operating point to judge, None) or (None, why there is none)."""
    if not trial.points:
        return None, "no load points recorded"
    usable = _usable_indices(trial.points)
    if not usable:
        return None, _unusable_reason(trial.points)
    if p99_ms is None:
        if trial.peak_index is not None and trial.peak_index in usable:
            return trial.peak_index, None
        return max(usable, key=lambda i: (trial.points[i].throughput_rps, -i)), None
    verdicts = {i: verdict_for(trial.points[i], p99_ms) for i in usable}
    meeting = [i for i in usable if verdicts[i].status == "met"]
    if not meeting:
        return None, _slo_reason([trial.points[i] for i in usable], list(verdicts.values()), p99_ms)
    return max(meeting, key=lambda i: (trial.points[i].throughput_rps, -i)), None


PriceAndSource = tuple[float | None, str | None]


def _price(
    trial: TrialRecord, override: PriceOverride | None, catalogue: PriceCatalogue | None
) -> PriceAndSource:
    """(USD per hour, where it came from): report-time override, recorded price, catalogue by instance."""
    if override is not None:
        return override.usd_per_hour, f"given at report time ({override.label})"
    if trial.machine.price_per_hour is not None:
        return trial.machine.price_per_hour, "recorded with the trial"
    if trial.machine.instance and catalogue is not None:
        try:
            return catalogue.lookup(trial.machine.instance).usd_per_hour, "price catalogue"
        except (UnknownInstanceError, ValueError):
            return None, None
    return None, None


def _label(trial: TrialRecord) -> str:
    c = trial.candidate
    batch = f" b{c.max_batch_size}/{c.max_delay_ms:g}ms" if c.max_batch_size > 1 else ""
    device = "" if c.device == "cpu" else f" {c.device}"
    stack = "" if c.stack == "deploybench" else f" via {c.stack}"
    runtime = f" {c.runtime.key_suffix}" if c.runtime.key_suffix else ""  # e.g. s2-ovl: streams, overlap
    return f"{c.backend} {trial.precision or 'fp32'}{device} w{c.workers}t{c.threads}{batch}{runtime}{stack}"


def _evaluate(trial: TrialRecord, constraints: Constraints, price: PriceAndSource) -> Evaluation:
    c = trial.candidate
    usd, price_source = price
    machine = trial.machine.instance or trial.machine.label
    ev = Evaluation(
        trial_id=trial.trial_id,
        key=f"{c.key}@{machine}",
        label=_label(trial),
        machine=machine,
        backend=c.backend,
        stack=c.stack,
        protocol=trial.stack.protocol if trial.stack else None,
        precision=trial.precision or "fp32",
        device=c.device,
        workers=c.workers,
        threads=c.threads,
        max_batch_size=c.max_batch_size,
        max_delay_ms=c.max_delay_ms,
        status=trial.status,
        weights=trial.weights,
        model=trial.model,
        usd_per_hour=usd,
        price_source=price_source,
        peak_rss_mb=trial.peak_rss_mb,
        server_cpu_pct=trial.server_cpu_pct,
        runoff=trial.runoff if constraints.p99_ms is None else None,  # it compared throughput only
        eligible=False,
        reason="",
    )
    if trial.peak is not None:
        ev.peak_throughput_rps = trial.peak.throughput_rps
        ev.peak_p99_ms = trial.peak.latency.p99_ms
    c16 = trial.at_c16
    if c16 is not None and c16.invalid_reason is None and c16.ok:
        ev.c16_p99_ms = c16.latency.p99_ms
    if trial.status == "rejected":
        ev.reason = f"parity failed: {trial.reason or (trial.parity and trial.parity.reason) or 'rejected'}"
        return ev
    if trial.status in ("failed", "skipped", "probe"):  # a probe is the search's evidence, never ranked
        ev.reason = f"{trial.status} trial: {trial.reason or 'no reason recorded'}"
        return ev
    if trial.accuracy is not None:
        ev.accuracy_drop_pp = trial.accuracy.drop_pp
    excluded = accuracy_exclusion(trial.accuracy, c.backend == "eager", constraints)
    if excluded:
        ev.reason = excluded
        return ev
    index, why = select_point(trial, constraints.p99_ms)
    if index is None:
        ev.reason = why or "no operating point"
        return ev
    _fill_point(ev, trial.points[index], index, usd)
    if constraints.min_throughput is not None and ev.throughput_rps < constraints.min_throughput:
        ev.reason = (
            f"below min throughput at its best point "
            f"({ev.throughput_rps:.1f} < {constraints.min_throughput:g} req/s)"
        )
        return ev
    ev.eligible = True
    return ev


def accuracy_exclusion(
    accuracy: AccuracyReport | None, reference: bool, constraints: Constraints
) -> str | None:
    """Why the variant's labelled accuracy excludes it under the constraints, or None."""
    limit, significant = constraints.max_accuracy_drop, constraints.reject_significant_drop
    if reference or (limit is None and not significant):
        return None
    if accuracy is None or accuracy.drop_pp is None:
        return "accuracy: not measured, so the accuracy constraint cannot be checked (run with --eval-data)"
    interval = f"95% CI [{accuracy.drop_low_pp:+.1f}, {accuracy.drop_high_pp:+.1f}] pp, n={accuracy.n}"
    if limit is not None and accuracy.drop_pp > limit:
        return f"accuracy: top-1 drop {accuracy.drop_pp:.1f} pp > max {limit:g} pp ({interval})"
    if significant and accuracy.significant and accuracy.drop_pp > 0:
        test = f"McNemar p={accuracy.p_value:.2g}"
        return f"accuracy: significant top-1 drop {accuracy.drop_pp:.1f} pp ({test}, {interval})"
    return None


def _fill_point(ev: Evaluation, point: LoadPoint, index: int, usd: float | None) -> None:
    ev.point_index = index
    ev.client_bound = point.client_bound
    ev.concurrency = point.concurrency
    ev.target_rate = point.target_rate
    ev.throughput_rps = point.throughput_rps
    ev.throughput_ci = point.throughput_ci
    ev.p50_ms = point.latency.p50_ms
    ev.p99_ms = point.latency.p99_ms
    ev.p99_ci = point.p99_ci
    ev.transactions_per_hour = transactions_per_hour(point.throughput_rps)
    if usd is not None:
        ev.cost_per_1m = cost_per_million(usd, point.throughput_rps)
        ev.cost_per_1m_ci = _cost_interval(usd, point.throughput_ci)


def _cost_interval(usd: float, throughput: Interval | None) -> Interval | None:
    """Cost per 1M falls as throughput rises: the throughput interval's ends, swapped."""
    if throughput is None or throughput.low <= 0:
        return None
    return Interval(
        low=cost_per_million(usd, throughput.high),
        high=cost_per_million(usd, throughput.low),
        confidence=throughput.confidence,
        method=f"from the throughput interval ({throughput.method})",
    )


def _sig(value: float | None, missing: float = math.inf) -> float:
    return missing if value is None else float(f"{value:.6g}")


def _sort_key(ev: Evaluation, objective: str) -> tuple:
    cost, p99, thr = _sig(ev.cost_per_1m), _sig(ev.p99_ms), -_sig(ev.throughput_rps, 0.0)
    main = {"cost": (cost, p99, thr), "throughput": (thr, p99, cost), "p99": (p99, cost, thr)}[objective]
    return (*main, ev.workers * ev.threads, _sig(ev.peak_rss_mb), ev.label, ev.key)


def _dominates(a: Evaluation, b: Evaluation) -> bool:
    """a is no worse than b on cost, p99 and throughput, and strictly better on one."""
    va = (_sig(a.cost_per_1m), _sig(a.p99_ms), -_sig(a.throughput_rps, 0.0))
    vb = (_sig(b.cost_per_1m), _sig(b.p99_ms), -_sig(b.throughput_rps, 0.0))
    return all(x <= y for x, y in zip(va, vb, strict=True)) and va != vb


def pareto_front(evaluations: Sequence[Evaluation]) -> list[Evaluation]:
    """Eligible evaluations no other eligible one dominates (cost per 1M, p99, throughput)."""
    eligible = [e for e in evaluations if e.eligible]
    return [e for e in eligible if not any(_dominates(o, e) for o in eligible if o is not e)]


def _versus(ev: Evaluation, ref: Evaluation, objective: str) -> str:
    if objective == "cost" and ev.cost_per_1m is not None and ref.cost_per_1m is not None:
        pct = pct_change(ev.cost_per_1m, ref.cost_per_1m)
        return f"more expensive than {ref.label} by {pct:.0f}% per 1M" if round(pct) else ""
    if objective == "p99":
        pct = pct_change(ev.p99_ms or 0, ref.p99_ms or 1)
        return f"p99 {pct:.0f}% higher than {ref.label}" if round(pct) else ""
    pct = -pct_change(ev.throughput_rps or 0, ref.throughput_rps or 1)
    return f"{pct:.0f}% less throughput than {ref.label}" if round(pct) else ""


OBJECTIVE_WORDS = {"cost": "lowest cost per 1M", "throughput": "highest throughput", "p99": "lowest p99"}


def _deltas(ev: Evaluation, ref: Evaluation) -> str:
    """'+30% cost per 1M, +28% p99, -20% throughput' of ev against ref (the parts both have)."""
    parts = []
    if ev.cost_per_1m is not None and ref.cost_per_1m:
        parts.append(f"{pct_change(ev.cost_per_1m, ref.cost_per_1m):+.0f}% cost per 1M")
    if ev.p99_ms is not None and ref.p99_ms:
        parts.append(f"{pct_change(ev.p99_ms, ref.p99_ms):+.0f}% p99")
    if ev.throughput_rps is not None and ref.throughput_rps:
        parts.append(f"{pct_change(ev.throughput_rps, ref.throughput_rps):+.0f}% throughput")
    return ", ".join(parts)


def _explain(ranked: list[Evaluation], front_keys: set[str], objective: str, tied: dict[str, str]) -> None:
    """One line each; `tied` maps a statistically tied candidate's key to the tie rule's words."""
    winner = ranked[0]
    winner.reason = (
        f"recommended: {OBJECTIVE_WORDS[objective]} of {len(ranked)} candidate(s) meeting the constraints"
    )
    for ev in ranked[1:]:
        dominator = next((o for o in ranked if _dominates(o, ev)), None)
        if dominator is not None:
            ev.reason = f"dominated by {dominator.label} ({_deltas(ev, dominator)})"
            continue
        if ev.key in tied:
            detail = (
                f"statistically tied with {winner.label} on {objective} (95% intervals overlap, "
                "estimates within 5%); "
                f"ranked after it by the tie rule ({tied[ev.key]})"
            )
        else:
            tie = f"tied with {winner.label} on {objective}; ranked after it by the tie-break"
            detail = _versus(ev, winner, objective) or tie
        ev.reason = detail + " (on the Pareto front)" * (ev.key in front_keys)


def recommend(
    trials: Sequence[TrialRecord],
    constraints: Constraints | None = None,
    *,
    price: PriceOverride | None = None,
    catalogue: PriceCatalogue | None = None,
    target_rps: float | None = None,
    headroom: float = 0.0,
) -> Recommendation:
    """Rank the trials under the constraints and explain, in one line each, why the others lost."""
    constraints = constraints or Constraints()
    evaluations = [_evaluate(t, constraints, _price(t, price, catalogue)) for t in trials]
    for index, ev in enumerate(evaluations):
        ev.trial_index = index
    _dedupe_keys(evaluations)
    notes: list[str] = []
    objective = constraints.objective
    eligible = [e for e in evaluations if e.eligible]
    if objective == "cost" and eligible and all(e.cost_per_1m is None for e in eligible):
        objective = "throughput"
        notes.append("No price known (pass --instance NAME or --price-per-hour X): ranked by throughput.")
    outcome = break_statistical_ties(sorted(eligible, key=lambda e: _sort_key(e, objective)), objective)
    ranked = outcome.ranked
    front = {e.key for e in pareto_front(ranked)}
    for rank, ev in enumerate(ranked, start=1):
        ev.rank, ev.pareto = rank, ev.key in front
    if ranked:
        _explain(ranked, front, objective, outcome.tied)
        _cost_ratios(evaluations, ranked[0])
    baseline_key = compare_with_baseline(evaluations)
    if target_rps is not None:
        for ev in ranked:
            ev.capacity = _capacity(ev, target_rps, headroom)
    rest = [e for e in evaluations if not e.eligible]
    return Recommendation(
        constraints=constraints,
        objective_used=objective,
        winner=ranked[0] if ranked else None,
        evaluations=[*ranked, *rest],
        baseline_key=baseline_key,
        notes=notes,
        weights=sorted({t.weights for t in trials}),
        machines=sorted({e.machine for e in evaluations}),
        target_rps=target_rps,
        headroom=headroom,
        comparison=outcome.comparison,
        tied_with=list(outcome.tied),
    )


def _capacity(ev: Evaluation, target_rps: float, headroom: float) -> CapacityPlan | None:
    if not ev.throughput_rps:
        return None
    return plan_capacity(target_rps, ev.throughput_rps, ev.usd_per_hour, headroom)


def _cost_ratios(evaluations: list[Evaluation], winner: Evaluation) -> None:
    if not winner.cost_per_1m:
        return
    for ev in evaluations:
        if ev.cost_per_1m is not None:
            ev.cost_vs_winner = ev.cost_per_1m / winner.cost_per_1m


def _dedupe_keys(evaluations: list[Evaluation]) -> None:
    seen: dict[str, int] = {}
    for ev in evaluations:
        seen[ev.key] = seen.get(ev.key, 0) + 1
        if seen[ev.key] > 1:
            ev.key = f"{ev.key}#{seen[ev.key]}"
