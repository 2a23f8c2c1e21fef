"""Does the winner beat the runner-up beyond the noise? If not, the tie rule picks between them.

Every measured figure carries a 95% interval (deploybench.load.intervals). Two candidates whose
intervals on the objective (cost per 1M, throughput or p99) overlap are statistically tied: the
measurement cannot tell them apart. Among the candidates tied with the best one, the tie rule
prefers, in this order:
  1. the cheaper machine (lower USD per hour);
  2. fewer cores (workers x threads): less to provision, less to contend with;
  3. no dynamic batching (batch 1): no batching delay, one knob fewer;
  4. lower peak memory (RSS);
  5. then the ranking by point estimates (objective, secondary metrics, label).
Overlapping 95% intervals is a conservative test of a difference (at about 99% confidence when the
two are alike in width): a candidate is called better only when the data clearly say so.
A tie hands the win to a simpler candidate only when that gives up at most TIE_MARGIN (5%) of the
objective by the point estimates (practical equivalence, as in an equivalence test's margin): on a
noisy machine wide intervals overlap across 10-15% gaps, and trading that much throughput for "no
batching" is a loss, not a tie. Beyond the margin the better estimate keeps the lead, and the
sentence says the lead is not beyond the noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from deploybench.evaluation import Evaluation
from deploybench.results import Interval

UNITS = {"cost": "$ per 1M", "throughput": "req/s", "p99": "ms p99"}
TIE_MARGIN = 0.05  # the most of the objective (relative, by the point estimates) a tie may give up


@dataclass
class TieOutcome:
    """The ranking after the tie rule, who is tied with the winner (key -> why it is after), a sentence."""

    ranked: list[Evaluation]
    tied: dict[str, str] = field(default_factory=dict)
    comparison: str | None = None


def objective_interval(ev: Evaluation, objective: str) -> Interval | None:
    return {"cost": ev.cost_per_1m_ci, "throughput": ev.throughput_ci, "p99": ev.p99_ci}[objective]


def overlap(a: Interval, b: Interval) -> bool:
    """Two 95% intervals overlap: the measurement cannot tell the two apart."""
    return a.low <= b.high and b.low <= a.high


def objective_value(ev: Evaluation, objective: str) -> float | None:
    return {"cost": ev.cost_per_1m, "throughput": ev.throughput_rps, "p99": ev.p99_ms}[objective]


def within_margin(best: Evaluation, other: Evaluation, objective: str) -> bool:
    """`other` is at most TIE_MARGIN worse than `best` on the objective's point estimates."""
    mine, theirs = objective_value(best, objective), objective_value(other, objective)
    if mine is None or theirs is None or mine <= 0:
        return False
    gap = (mine - theirs) / mine if objective == "throughput" else (theirs - mine) / mine
    return gap <= TIE_MARGIN


def _rule_key(ev: Evaluation) -> tuple:
    price = ev.usd_per_hour if ev.usd_per_hour is not None else math.inf
    rss = ev.peak_rss_mb if ev.peak_rss_mb is not None else math.inf
    return (price, ev.workers * ev.threads, ev.max_batch_size > 1, rss)


def _why(winner: Evaluation, other: Evaluation) -> str:
    """The first tie-rule criterion on which the winner is preferred to `other`."""
    names = ("cheaper machine", "fewer cores", "no batching", "less memory")
    for name, mine, theirs in zip(names, _rule_key(winner), _rule_key(other), strict=True):
        if mine != theirs:
            if name == "fewer cores":
                return f"{name}: {mine} vs {theirs}"
            return name
    return "equal on every tie criterion: ranked by the point estimates"


def _fmt(interval: Interval, objective: str) -> str:
    digits = 2 if objective == "cost" else 1
    return f"{interval.low:,.{digits}f}-{interval.high:,.{digits}f} {UNITS[objective]}"


def _lead(best: Evaluation, runner_up: Evaluation, objective: str, overlapping: bool) -> str:
    """The winner's lead over the runner-up in words: beyond the noise, or only on the estimates."""
    best_ci, runner_ci = objective_interval(best, objective), objective_interval(runner_up, objective)
    both = f"{_fmt(best_ci, objective)} vs {_fmt(runner_ci, objective)}"  # type: ignore[arg-type]
    if not overlapping:
        return (
            f"beats the runner-up {runner_up.label} beyond the noise on {objective}: {both} "
            "(95% intervals do not overlap)"
        )
    mine, theirs = objective_value(best, objective) or 0.0, objective_value(runner_up, objective) or 0.0
    gap = abs(mine - theirs) / mine if mine else 0.0
    return (
        f"ahead of the runner-up {runner_up.label} by {gap:.0%} on {objective}, not beyond the noise "
        f"({both}: 95% intervals overlap); kept on the point estimates, since a tie may give up "
        f"at most {TIE_MARGIN:.0%}"
    )


def break_statistical_ties(ranked: Sequence[Evaluation], objective: str) -> TieOutcome:
    """Reorder the candidates tied with the best one by the tie rule; say what the data support."""
    ranked = list(ranked)
    if len(ranked) < 2:
        return TieOutcome(ranked)
    best, runner_up = ranked[0], ranked[1]
    best_ci, runner_ci = objective_interval(best, objective), objective_interval(runner_up, objective)
    if best_ci is None or runner_ci is None:
        return TieOutcome(ranked, comparison="no intervals recorded: ranked on the point estimates alone")
    noisy = [ev for ev in ranked[1:] if (ci := objective_interval(ev, objective)) and overlap(best_ci, ci)]
    tied = [ev for ev in noisy if within_margin(best, ev, objective)]
    if not tied:
        return TieOutcome(ranked, comparison=_lead(best, runner_up, objective, runner_up in noisy))
    group = sorted([best, *tied], key=lambda ev: (_rule_key(ev), ranked.index(ev)))
    winner = group[0]
    rest = [ev for ev in ranked if ev not in group]
    reasons = {ev.key: _why(winner, ev) for ev in group[1:]}
    others = ", ".join(
        f"{ev.label} ({_fmt(objective_interval(ev, objective), objective)})"  # type: ignore[arg-type]
        for ev in group[1:]
    )
    winner_ci = objective_interval(winner, objective)
    comparison = (
        f"statistically tied on {objective} with {others}: 95% intervals overlap and the point "
        f"estimates are within {TIE_MARGIN:.0%} "
        f"(winner {_fmt(winner_ci, objective)}); chosen by the tie rule: "  # type: ignore[arg-type]
        f"{reasons[group[1].key]}"
    )
    return TieOutcome([*group, *rest], reasons, comparison)
