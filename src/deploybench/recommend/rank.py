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
from deploybench.pricing.catalogue import (
    CapacityPlan,
    PriceCatalogue,
    PriceOverride,
    UnknownInstanceError,
    cost_per_million,
    plan_capacity,
    transactions_per_hour,
)
from deploybench.recommend.baseline import compare_with_baseline
from deploybench.recommend.bill import (
    BILL_OBJECTIVE,
    attach_plans,
    bill_reasons,
    order_by_bill,
    simulate_top,
    traffic_note,
)
from deploybench.recommend.explain import explain
from deploybench.recommend.points import MAX_ERROR_RATE, usable_indices, verdict_for
from deploybench.recommend.records import Evaluation, Recommendation, accuracy_words, trial_label
from deploybench.recommend.runner_up import add_search_figures, runner_up_words
from deploybench.recommend.ties import break_statistical_ties
from deploybench.results import AccuracyReport, Interval, LoadPoint, SloVerdict, TrialRecord
from deploybench.traffic.fleet import FleetSettings
from deploybench.traffic.profile import TrafficProfile

__all__ = ["Evaluation", "Recommendation", "recommend", "select_point"]


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
    """Why no usable point meets the budget: missed by verdict, or too few requests to tell. A raw
    p99 above the bound is no verdict: a point of a few dozen requests cannot show a miss either."""
    best = min(p.latency.p99_ms for p in points)
    missed = sum(v.status == "missed" for v in verdicts)
    if missed == len(verdicts):
        return (
            f"SLO missed at every load by its early-stopping verdict (best p99 {best:.1f} ms > {p99_ms:g} ms)"
        )
    largest = max(verdicts, key=lambda v: v.requests)
    misses = f"missed by verdict at {missed} of {len(verdicts)} loads; " if missed else ""
    return (
        f"SLO not verifiable: {misses}no point's early-stopping verdict could claim p99 <= {p99_ms:g} ms "
        f"(largest holds {largest.requests} requests, {largest.required_requests} needed; raw best "
        f"p99 {best:.1f} ms)"
    )


def select_point(trial: TrialRecord, p99_ms: float | None) -> tuple[int | None, str | None]:
    """(index of the operating point to judge, None) or (None, why there is none)."""
    if not trial.points:
        return None, "no load points recorded"
    usable = usable_indices(trial.points)
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


def _evaluate(trial: TrialRecord, constraints: Constraints, price: PriceAndSource) -> Evaluation:
    c = trial.candidate
    usd, price_source = price
    machine = trial.machine.instance or trial.machine.label
    ev = Evaluation(
        trial_id=trial.trial_id,
        key=f"{c.key}@{machine}",
        label=trial_label(trial),
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
    if c16 is not None and c16.invalid_reason is None and c16.ok and c16.p99_ci is not None:
        ev.c16_p99_ms = c16.latency.p99_ms  # a p99 change only from points with enough requests for one
    if trial.status == "rejected":
        ev.reason = f"parity failed: {trial.reason or (trial.parity and trial.parity.reason) or 'rejected'}"
        return ev
    if trial.status in ("failed", "skipped", "probe"):  # a probe is the search's evidence, never ranked
        ev.reason = f"{trial.status} trial: {trial.reason or 'no reason recorded'}"
        return ev
    if trial.accuracy is not None:
        ev.accuracy_drop_pp = trial.accuracy.drop_pp
        ev.accuracy_change = accuracy_words(trial.accuracy)
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
        between_run_rel_sd=throughput.between_run_rel_sd,
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


def recommend(
    trials: Sequence[TrialRecord],
    constraints: Constraints | None = None,
    *,
    price: PriceOverride | None = None,
    catalogue: PriceCatalogue | None = None,
    target_rps: float | None = None,
    headroom: float = 0.0,
    search_records: Sequence[TrialRecord] = (),
    traffic: TrafficProfile | None = None,
    fleet: FleetSettings | None = None,
) -> Recommendation:
    """Rank the trials under the constraints and explain, in one line each, why the others lost.
    search_records: the search's round records (status probe): a dropped candidate shows the figure of
    the last round it ran, and the paired runoff names the winner's runner-up. traffic: plan each
    ranked candidate's fleet for it and, with the cost objective, rank by its monthly bill."""
    constraints = constraints or Constraints()
    evaluations = [_evaluate(t, constraints, _price(t, price, catalogue)) for t in trials]
    for index, ev in enumerate(evaluations):
        ev.trial_index = index
    add_search_figures(evaluations, search_records)
    _dedupe_keys(evaluations)
    notes: list[str] = []
    objective = constraints.objective
    eligible = [e for e in evaluations if e.eligible]
    if objective == "cost" and eligible and all(e.cost_per_1m is None for e in eligible):
        objective = "throughput"
        notes.append("No price known (pass --instance NAME or --price-per-hour X): ranked by throughput.")
    outcome = break_statistical_ties(sorted(eligible, key=lambda e: _sort_key(e, objective)), objective)
    fleet = fleet or FleetSettings()
    by_bill = traffic is not None and objective == "cost"
    if traffic is not None:
        attach_plans(outcome.ranked, trials, traffic, fleet, constraints.p99_ms)
        outcome = order_by_bill(outcome) if by_bill else outcome
        simulate_top(outcome.ranked, trials, traffic, fleet, constraints.p99_ms)
    ranked = outcome.ranked
    front = {e.key for e in pareto_front(ranked)}
    for rank, ev in enumerate(ranked, start=1):
        ev.rank, ev.pareto = rank, ev.key in front
    if ranked:
        explain(ranked, front, objective, outcome, _dominates)
        if by_bill:
            bill_reasons(ranked)
        _cost_ratios(evaluations, ranked[0])
    baseline_key = compare_with_baseline(evaluations)
    if target_rps is not None:
        for ev in ranked:
            ev.capacity = _capacity(ev, target_rps, headroom)
    rest = [e for e in evaluations if not e.eligible]
    labels = {e.trial_id: e.label for e in evaluations}
    note = traffic_note(ranked, trials, labels, constraints.p99_ms) if traffic is not None else None
    return Recommendation(
        constraints=constraints,
        objective_used=BILL_OBJECTIVE if by_bill else objective,
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
        runner_up=runner_up_words(ranked, [*trials, *search_records]),
        traffic=traffic,
        fleet=fleet if traffic is not None else None,
        traffic_note=note,
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
