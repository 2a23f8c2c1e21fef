"""A search round's decisions: each candidate's score, who is kept, who is dropped and why.

Scores come from paired runoffs where the executor serves several candidates at once (study/runoff.py):
two candidates of one runoff compare by their window-by-window throughput ratio
(deploybench.recommend.ties.paired_ratio), so the host's drift cancels. A probe round too large to
serve at once runs as several runoffs sharing one reference candidate (study/probe.py); two
candidates of different runoffs compare through it: the ratio of their ratios to the reference, its
log half-width the two half-widths in quadrature (independent windows).
With a p99 bound a round ranks by throughput within it: a candidate whose windows clearly missed the
bound (LoadGen's mirror test, deploybench.load.early_stopping) ranks after every one that did not.
Short windows can never show "met" (459 requests are the least at p99), so only a clear miss demotes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from deploybench.load.early_stopping import slo_verdict
from deploybench.load.stats import decode_histogram, merge_histograms
from deploybench.recommend.ties import PairedRatio, geometric_mean, overlap, paired_ratio
from deploybench.results import Interval, LoadPoint, RunoffSample, TrialRecord
from deploybench.study.spec import SearchSpec

ROUNDS = 3  # probe, longer run, full plan


@dataclass(frozen=True)
class Score:
    """One candidate's result in one round; rps None: the round measured nothing usable (failure says why)."""

    trial_id: str
    rps: float | None
    ci: Interval | None = None
    failure: str | None = None
    runoff: RunoffSample | None = None
    to_reference: PairedRatio | None = None  # its throughput over its runoff group's reference's
    missed: str | None = None  # with a p99 bound: why its windows clearly missed it
    lost: bool = False  # its measurement was lost to the infrastructure, twice: kept, unmeasured


@dataclass
class RoundOutcome:
    kept: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # trial id -> why
    tied: list[str] = field(default_factory=list)  # kept only because tied with the best
    unmeasured: list[str] = field(default_factory=list)  # kept because their measurement was lost


def round_sizes(contenders: int, spec: SearchSpec) -> tuple[int, int]:
    """How many get the longer run, and how many of those the full plan (before ties). The longer run
    serves its contenders at once beside the baseline, so it takes at most what one probe runoff holds
    (probe_servers, less one for the baseline): a third of hundreds would not fit in memory."""
    runoff = max(spec.min_round2, spec.probe_servers - 1)
    longer = min(contenders, max(spec.min_round2, math.ceil(contenders / spec.eta)), runoff)
    final = min(spec.finalists, longer, max(1, math.ceil(longer / spec.eta)))
    return longer, final


def _ranked(scores: list[Score]) -> list[Score]:
    """Those within the p99 bound (or with none) first, each part by throughput."""
    usable = (s for s in scores if s.rps is not None and not s.lost)
    return sorted(usable, key=lambda s: (s.missed is not None, -(s.rps or 0.0), s.trial_id))


def _dropped_reason(score: Score, best: Score, label: str, round_no: int) -> str:
    if score.rps is None:
        return f"{score.failure or f'failed: {label}: no successful request'} (round {round_no} of {ROUNDS})"
    gap = 1.0 - score.rps / best.rps if best.rps else 0.0
    slo = f"; {score.missed}" if score.missed else ""
    return (
        f"dropped after {label}: {score.rps:.1f} req/s, {gap:.0%} below the best {best.rps:.1f} req/s"
        f"{slo} (round {round_no} of {ROUNDS})"
    )


def chained(best: PairedRatio, other: PairedRatio) -> PairedRatio:
    """`other` over `best` where each is a ratio to a common reference, from independent windows:
    the ratio of the ratios, its log half-width the two half-widths in quadrature."""
    ratio = other.ratio / best.ratio
    half = math.hypot(math.log(best.high / best.low) / 2, math.log(other.high / other.low) / 2)
    return PairedRatio(ratio, ratio * math.exp(-half), ratio * math.exp(half), min(best.rounds, other.rounds))


def paired(best: Score, other: Score) -> PairedRatio | None:
    """`other` over `best` side by side: one runoff's paired ratio, or through the common reference."""
    if best.runoff is not None and other.runoff is not None and best.runoff.group == other.runoff.group:
        return paired_ratio(best.runoff, other.runoff)
    if best.to_reference is not None and other.to_reference is not None:
        return chained(best.to_reference, other.to_reference)
    return None


def _tied(best: Score, other: Score) -> bool:
    """The data cannot tell `other` from the best: by the paired runoff where both ran in one."""
    if best.runoff is not None and other.runoff is not None:
        pair = paired(best, other)
        return pair is not None and pair.indistinguishable
    return best.ci is not None and other.ci is not None and overlap(best.ci, other.ci)


def decide(
    scores: list[Score], keep: int, max_tied: int, label: str, round_no: int, cutoff: bool = False
) -> RoundOutcome:
    """Keep the `keep` best, then up to `max_tied` more that the data cannot tell from the best (or,
    with `cutoff`, from the last one kept: the probe asks who is among the best, not who is best).
    A candidate whose measurement was lost is kept: the infrastructure's failure is not its own."""
    ranked = _ranked(scores)
    outcome = RoundOutcome(kept=[s.trial_id for s in ranked[:keep]])
    if ranked:
        against = ranked[min(keep, len(ranked)) - 1] if cutoff else ranked[0]
        same_side = [s for s in ranked[keep:] if (s.missed is None) == (against.missed is None)]
        tied = [s for s in same_side if _tied(against, s)][:max_tied]
        outcome.tied = [s.trial_id for s in tied]
        outcome.kept += outcome.tied
    outcome.unmeasured = [s.trial_id for s in scores if s.lost]
    outcome.kept += outcome.unmeasured
    best = ranked[0] if ranked else Score("", None)
    for score in scores:
        if score.trial_id not in outcome.kept:
            outcome.dropped[score.trial_id] = _dropped_reason(score, best, label, round_no)
    return outcome


def missed_bound(points: list[LoadPoint], p99_ms: float | None) -> str | None:
    """Why the round's windows, pooled, clearly missed the p99 bound (None: not clearly, or no bound)."""
    if p99_ms is None or not points:
        return None
    hist = decode_histogram(merge_histograms(p.histogram for p in points))
    verdict = slo_verdict(hist, sum(p.error_count for p in points), p99_ms)
    if verdict.status != "missed":
        return None
    return (
        f"p99 clearly above the {p99_ms:g} ms bound at concurrency {points[0].concurrency} "
        f"({verdict.overshoots} of {verdict.requests} requests over it)"
    )


def score_of(trial_id: str, record: TrialRecord, p99_ms: float | None = None) -> Score:
    """A round's record as a score: its best valid point's throughput and 95% interval (a runoff's:
    the geometric mean of its rounds, compared pairwise; with a p99 bound, whether it clearly missed)."""
    if record.runoff is not None:
        missed = missed_bound(record.points, p99_ms)
        return Score(trial_id, geometric_mean(record.runoff.rps), runoff=record.runoff, missed=missed)
    valid = [p for p in record.points if p.invalid_reason is None and p.ok > 0]
    if not valid:
        return Score(trial_id, None, failure=record.reason or "no successful request")
    best = max(valid, key=lambda p: p.throughput_rps)
    return Score(trial_id, best.throughput_rps, best.throughput_ci)
