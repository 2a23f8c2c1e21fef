"""Every candidate against the eager baseline: the speed-up a deployment buys over doing nothing.

Where the candidate and the baseline ran in one paired runoff (search round 2: served at once,
visited in turn at 16 clients), the throughput ratio is theirs, window by window (deploybench.recommend.ties):
the host's drift cancels, and so does the baseline's own instability. A slow eager server's windows
are long (each must hold its minimum count of requests), so its three last windows span more of the
drift and its point is often unstable; the paired ratio needs no trusted point. Elsewhere the ratio
is of the two operating points.
"""

from __future__ import annotations

from deploybench.recommend.records import Evaluation
from deploybench.recommend.ties import PairedRatio, paired_ratio
from deploybench.results import Interval

PAIRED_METHOD = "paired t on the log ratios of the runoff's rounds"


def pct_change(value: float, reference: float) -> float:
    return (value / reference - 1) * 100


def _baseline_for(ev: Evaluation, baselines: list[Evaluation]) -> Evaluation | None:
    same = [b for b in baselines if b.machine == ev.machine]
    return (same or baselines or [None])[0]


def _p99_change(ev: Evaluation, base: Evaluation) -> tuple[float | None, bool]:
    """p99 against the baseline at the same load, 16 clients, when both have it: the two operating
    points sit at different concurrencies (a slow baseline queues 16 deep), so theirs do not compare."""
    if ev.c16_p99_ms and base.c16_p99_ms:
        return pct_change(ev.c16_p99_ms, base.c16_p99_ms), True
    if not base.ref_p99_ms or ev.p99_ci is None or base.p99_ci is None:
        return None, False  # a p99 from too few requests for an interval supports no change
    return pct_change(ev.p99_ms, base.ref_p99_ms), False


def paired_with_baseline(ev: Evaluation, base: Evaluation) -> PairedRatio | None:
    """ev's throughput over the baseline's, round by round, where one runoff measured both."""
    if ev.runoff is None or base.runoff is None or ev.key == base.key:
        return None
    return paired_ratio(base.runoff, ev.runoff)


def _throughput_x(ev: Evaluation, base: Evaluation) -> bool:
    """Fill ev's speed-up (and its interval where paired); False when there is nothing to compare."""
    paired = paired_with_baseline(ev, base)
    if paired is not None:
        ev.throughput_x = paired.ratio
        ev.throughput_x_ci = Interval(low=paired.low, high=paired.high, method=PAIRED_METHOD)
        ev.throughput_x_paired = paired.rounds
        return True
    if not base.ref_throughput_rps or ev.throughput_rps is None:
        return False
    ev.throughput_x = ev.throughput_rps / base.ref_throughput_rps
    return True


def _cost_change(ev: Evaluation, base: Evaluation) -> float | None:
    """Cost per 1M against the baseline's: from the paired ratio on one machine (one price)."""
    priced = ev.usd_per_hour is not None and ev.usd_per_hour == base.usd_per_hour
    if ev.throughput_x_paired and ev.throughput_x and priced:
        return (1 / ev.throughput_x - 1) * 100
    if ev.cost_per_1m is not None and base.ref_cost_per_1m:
        return pct_change(ev.cost_per_1m, base.ref_cost_per_1m)
    return None


def compare_with_baseline(evaluations: list[Evaluation]) -> str | None:
    """Fill each evaluation's change against the eager baseline (same machine when there is one);
    the baseline's key, or None when there is none to compare with."""
    baselines = sorted(
        (e for e in evaluations if e.is_default_eager and (e.ref_throughput_rps or e.runoff)),
        key=lambda e: (-e.threads, e.key),
    )
    for ev in evaluations:
        base = _baseline_for(ev, baselines)
        if base is None or ev.throughput_rps is None or not _throughput_x(ev, base):
            continue
        ev.baseline_key = base.key
        ev.p99_change_pct, ev.p99_change_at_c16 = _p99_change(ev, base)
        ev.cost_change_pct = _cost_change(ev, base)
    return baselines[0].key if baselines else None
