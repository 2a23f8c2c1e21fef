"""Does the winner beat the runner-up beyond the noise? If not, the tie rule picks between them.

Every measured figure carries a 95% interval (deploybench.load.intervals). Two candidates whose
intervals on the objective (cost per 1M, throughput or p99) overlap are statistically tied: the
measurement cannot tell them apart. Among the candidates tied with the best one, the tie rule
prefers, in this order:
  1. the cheaper machine (lower USD per hour);
  2. fewer cores (workers x threads): less to provision, less to contend with;
  3. no dynamic batching (batch 1): no batching delay, one knob fewer;
  4. lower peak memory (RSS), by at least MEMORY_MARGIN (10%): a few MB either way is the
     allocator's noise, not a reason;
  5. then the ranking by point estimates (objective, secondary metrics, label).
Candidates of one paired runoff (search round 2, study/runoff.py: served side by side, measured in
turn, seconds apart) are compared by that runoff instead, for throughput and cost: they are ranked by
it, and tied when the 95% interval of their window-by-window throughput ratio reaches 1. Their own
intervals come from points measured minutes apart, and a shared host's drift over minutes can be
wider than the gaps between the best configurations.
Overlapping 95% intervals is a conservative test of a difference (at about 99% confidence when the
two are alike in width): a candidate is called better only when the data clearly say so. Points taken
at different times, not paired, lead "beyond the noise" only when both intervals carry the between-run
term measured on this machine (deploybench.load.noise); otherwise the lead is said to be "not paired".
A tie hands the win to a simpler candidate only when the data show it gives up at most TIE_MARGIN
(5%) of the objective: the low end of the 95% interval on its share of the best (the paired ratio,
or both intervals combined) reaches 0.95, an equivalence test (as TOST). Overlapping intervals alone
are not enough: the pick would give up up to 5% by the estimates and more in truth. A tied candidate
the data do not show within the margin stays behind the better estimate, and the sentence says so.
Beyond the margin on the estimates they are not tied at all: the better estimate keeps the lead, and
the sentence says the lead is not beyond the noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from deploybench.recommend.records import Evaluation
from deploybench.results import Interval, RunoffSample

UNITS = {"cost": "$ per 1M", "throughput": "req/s", "p99": "ms p99"}
TIE_MARGIN = 0.05  # the most of the objective (relative, by the point estimates) a tie may give up
MEMORY_MARGIN = 0.10  # the least share of peak memory that "less memory" must save to decide a tie


@dataclass
class TieOutcome:
    """The ranking after the tie rule, who is tied with the winner (key -> why it is after), a sentence."""

    ranked: list[Evaluation]
    tied: dict[str, str] = field(default_factory=dict)
    comparison: str | None = None
    chosen_by_rule_over: str | None = None  # the best estimate's label, when the tie rule chose another


@dataclass(frozen=True)
class PairedRatio:
    """Throughput of `other` over `reference`, window by window: geometric mean and 95% interval."""

    ratio: float
    low: float
    high: float
    rounds: int

    @property
    def indistinguishable(self) -> bool:
        """The data cannot tell the two apart: the 95% interval reaches 1 (a ratio above 1 is reordered)."""
        return self.high >= 1.0

    @property
    def within_margin(self) -> bool:
        """The estimate gives up at most TIE_MARGIN: what a tie may trade away."""
        return self.ratio >= 1.0 - TIE_MARGIN

    def words(self) -> str:
        interval = f"{self.low:.3f}-{self.high:.3f}"
        return f"paired runoff {self.ratio:.3f}x ({interval}, {self.rounds} rounds side by side)"


def geometric_mean(values: Sequence[float]) -> float:
    """0 when any value is not positive (a round that answered nothing)."""
    if not values or min(values) <= 0:
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


def paired_ratio(
    reference: RunoffSample, other: RunoffSample, confidence: float = 0.95
) -> PairedRatio | None:
    """A paired t interval on the log ratios of the rounds; None unless one runoff, 2+ usable rounds."""
    if reference.group != other.group or len(reference.rps) != len(other.rps):
        return None
    logs = [math.log(b / a) for a, b in zip(reference.rps, other.rps, strict=True) if a > 0 and b > 0]
    if len(logs) < 2 or len(logs) < len(reference.rps):
        return None
    from scipy.stats import t  # here: scipy's import is a second every CLI start would pay

    mean = sum(logs) / len(logs)
    spread = math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))
    half = float(t.ppf(0.5 + confidence / 2, len(logs) - 1)) * spread / math.sqrt(len(logs))
    return PairedRatio(math.exp(mean), math.exp(mean - half), math.exp(mean + half), len(logs))


def runoff_pair(best: Evaluation, other: Evaluation, objective: str) -> PairedRatio | None:
    """The paired comparison of two candidates, where one runoff measured both (not for p99)."""
    if objective == "p99" or best.runoff is None or other.runoff is None:
        return None
    return paired_ratio(best.runoff, other.runoff)


def runoff_order(ranked: Sequence[Evaluation], objective: str) -> list[Evaluation]:
    """Each runoff's candidates, in the places they hold, reordered by their runoff throughput: on one
    machine (one price), the faster side by side is also the cheaper."""
    ranked = list(ranked)
    if objective == "p99":
        return ranked
    places: dict[str, list[int]] = {}
    for index, ev in enumerate(ranked):
        if ev.runoff is not None:
            places.setdefault(ev.runoff.group, []).append(index)
    for indices in places.values():
        members = sorted((ranked[i] for i in indices), key=lambda ev: -geometric_mean(ev.runoff.rps))  # type: ignore[union-attr]
        for index, ev in zip(indices, members, strict=True):
            ranked[index] = ev
    return ranked


def objective_interval(ev: Evaluation, objective: str) -> Interval | None:
    return {"cost": ev.cost_per_1m_ci, "throughput": ev.throughput_ci, "p99": ev.p99_ci}[objective]


def overlap(a: Interval, b: Interval) -> bool:
    """Two 95% intervals overlap: the measurement cannot tell the two apart."""
    return a.low <= b.high and b.low <= a.high


BETWEEN_RUN_TEST = "95% intervals with this machine's between-run term do not overlap"


def carry_between_run(best: Evaluation, other: Evaluation, objective: str) -> bool:
    """Both intervals add the between-run term measured on this machine (deploybench.load.noise):
    only then may points taken at different times, not paired, differ beyond the noise."""
    intervals = objective_interval(best, objective), objective_interval(other, objective)
    return all(interval is not None and interval.between_run for interval in intervals)


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
    """The tie rule's first three criteria; memory comes after them, with its margin (_tie_order)."""
    price = ev.usd_per_hour if ev.usd_per_hour is not None else math.inf
    return (price, ev.workers * ev.threads, ev.max_batch_size > 1)


def _less_memory(ev: Evaluation, than: Evaluation) -> bool:
    """`ev` needs at least MEMORY_MARGIN less peak memory than `than` (unknown memory never wins)."""
    if ev.peak_rss_mb is None:
        return False
    return than.peak_rss_mb is None or ev.peak_rss_mb <= (1.0 - MEMORY_MARGIN) * than.peak_rss_mb


def _tie_order(group: list[Evaluation], ranked: list[Evaluation]) -> list[Evaluation]:
    """The tied group by the tie rule: the first three criteria, then the leanest of the candidates
    equal on them if it saves the memory margin over the best estimate among them, then the ranking."""
    ordered = sorted(group, key=lambda ev: (_rule_key(ev), ranked.index(ev)))
    head = ordered[0]
    peers = [ev for ev in ordered if _rule_key(ev) == _rule_key(head)]
    leanest = min(peers, key=lambda ev: math.inf if ev.peak_rss_mb is None else ev.peak_rss_mb)
    if _less_memory(leanest, head):
        ordered.remove(leanest)
        ordered.insert(0, leanest)
    return ordered


def _why(winner: Evaluation, other: Evaluation) -> str:
    """The first tie-rule criterion on which the winner is preferred to `other`."""
    names = ("cheaper machine", "fewer cores", "no batching")
    for name, mine, theirs in zip(names, _rule_key(winner), _rule_key(other), strict=True):
        if mine != theirs:
            if name == "fewer cores":
                return f"{name}: {mine} vs {theirs}"
            return name
    if _less_memory(winner, other):
        theirs = "unknown" if other.peak_rss_mb is None else f"{other.peak_rss_mb:,.0f} MB"
        return f"less memory: {winner.peak_rss_mb:,.0f} MB vs {theirs}"
    return f"equal on every tie criterion (memory within {MEMORY_MARGIN:.0%}): ranked by the point estimates"


def _fmt(interval: Interval, objective: str) -> str:
    digits = 2 if objective == "cost" else 1
    return f"{interval.low:,.{digits}f}-{interval.high:,.{digits}f} {UNITS[objective]}"


def _evidence(best: Evaluation, other: Evaluation, objective: str) -> str:
    """What the comparison rests on, in words: the paired runoff, or the two 95% intervals."""
    pair = runoff_pair(best, other, objective)
    if pair is not None:
        return pair.words()
    best_ci, other_ci = objective_interval(best, objective), objective_interval(other, objective)
    return f"{_fmt(best_ci, objective)} vs {_fmt(other_ci, objective)}"  # type: ignore[arg-type]


def _indistinguishable(best: Evaluation, other: Evaluation, objective: str) -> bool:
    """The data cannot tell the two apart: the paired ratio's interval reaches 1, or the intervals overlap."""
    pair = runoff_pair(best, other, objective)
    if pair is not None:
        return pair.indistinguishable
    best_ci, other_ci = objective_interval(best, objective), objective_interval(other, objective)
    return best_ci is not None and other_ci is not None and overlap(best_ci, other_ci)


def _close(best: Evaluation, other: Evaluation, objective: str) -> bool:
    """Within the margin a tie may give up: by the paired ratio where there is one."""
    pair = runoff_pair(best, other, objective)
    if pair is not None:
        return pair.within_margin
    return within_margin(best, other, objective)


def _lead(best: Evaluation, runner_up: Evaluation, objective: str, overlapping: bool) -> str:
    """The winner's lead over the runner-up in words: beyond the noise, or only on the estimates."""
    both = _evidence(best, runner_up, objective)
    pair = runoff_pair(best, runner_up, objective)
    paired = pair is not None
    if not overlapping and (paired or carry_between_run(best, runner_up, objective)):
        test = "the paired interval stays below 1" if paired else BETWEEN_RUN_TEST
        return f"beats the next ranked {runner_up.label} beyond the noise on {objective}: {both} ({test})"
    if not overlapping:  # points taken at different times: their intervals omit the drift between them
        return (
            f"ahead of the next ranked {runner_up.label} on {objective}: {both} (95% intervals do not "
            "overlap; not paired: measured at different times, so drift of the host between them is "
            "not in these intervals; `deploybench load --repeat` measures it on this machine)"
        )
    if pair is not None:
        gap = 1.0 - pair.ratio
    else:
        mine, theirs = objective_value(best, objective) or 0.0, objective_value(runner_up, objective) or 0.0
        gap = abs(mine - theirs) / mine if mine else 0.0
    test = "the paired interval reaches 1" if paired else "95% intervals overlap"
    return (
        f"ahead of the next ranked {runner_up.label} by {gap:.0%} on {objective}, not beyond the noise "
        f"({both}: {test}); kept on the point estimates, since a tie may give up "
        f"at most {TIE_MARGIN:.0%}"
    )


def share_low(best: Evaluation, other: Evaluation, objective: str) -> float | None:
    """The low end of the 95% interval on `other`'s objective as a share of `best`'s (1: as good,
    0.9: 10% worse): the paired runoff's ratio where one runoff measured both, else the two intervals
    combined on a log scale (half-widths in quadrature, as for independent estimates)."""
    pair = runoff_pair(best, other, objective)
    if pair is not None:
        return pair.low  # one machine, one price: the cost share is the throughput ratio
    mine, theirs = objective_value(best, objective), objective_value(other, objective)
    best_ci, other_ci = objective_interval(best, objective), objective_interval(other, objective)
    if mine is None or theirs is None or best_ci is None or other_ci is None:
        return None
    if min(mine, theirs, best_ci.low, other_ci.low) <= 0:
        return None
    share = theirs / mine if objective == "throughput" else mine / theirs
    half = math.hypot(math.log(best_ci.high / best_ci.low) / 2, math.log(other_ci.high / other_ci.low) / 2)
    return share * math.exp(-half)


def shown_within_margin(best: Evaluation, other: Evaluation, objective: str) -> bool:
    """An equivalence test (as TOST's lower bound): the data show `other` gives up at most TIE_MARGIN.
    Only then may the tie rule rank it above the best estimate; an overlap alone is not enough, since
    the rule would otherwise give up up to 5% on the estimates and more in truth."""
    low = share_low(best, other, objective)
    return low is not None and low >= 1.0 - TIE_MARGIN


def _kept_reason(best: Evaluation, other: Evaluation, objective: str) -> str:
    low = share_low(best, other, objective)
    down_to = "" if low is None else f" (down to {low:.3f}x at its interval's low end)"
    return (
        f"the better estimate kept: the data do not show {other.label} within {TIE_MARGIN:.0%} of "
        f"{best.label}{down_to}"
    )


def _tie_sentence(
    group: list[Evaluation],
    best: Evaluation,
    after: list[Evaluation],
    reasons: dict[str, str],
    objective: str,
) -> str:
    """`group`: the winner, then the tied candidates the tie rule ranked (the others follow in `after`)."""
    winner = group[0]
    others = ", ".join(
        f"{ev.label} ({'the best estimate; ' if ev is best else ''}{_evidence(winner, ev, objective)})"
        for ev in after
    )
    head = (
        f"statistically tied on {objective} with {others}: the data cannot tell them apart and the "
        f"estimates are within {TIE_MARGIN:.0%} (winner {_winner_figure(winner, objective)}); "
    )
    if winner is not best:
        low = share_low(best, winner, objective) or 0.0
        return head + (
            f"chosen by the tie rule: {reasons[best.key]}, and shown within {TIE_MARGIN:.0%} of the best "
            f"estimate ({low:.3f}x at its 95% interval's low end)"
        )
    if len(group) > 1:
        return head + f"chosen by the tie rule: {reasons[after[0].key]}"
    return head + reasons[after[0].key]


def break_statistical_ties(ranked: Sequence[Evaluation], objective: str) -> TieOutcome:
    """Reorder the candidates tied with the best one by the tie rule, among those the data show
    within the margin of it; say what the data support."""
    ranked = runoff_order(ranked, objective)
    if len(ranked) < 2:
        return TieOutcome(ranked)
    best, runner_up = ranked[0], ranked[1]
    intervals = objective_interval(best, objective), objective_interval(runner_up, objective)
    if None in intervals and runoff_pair(best, runner_up, objective) is None:
        return TieOutcome(ranked, comparison="no intervals recorded: ranked on the point estimates alone")
    noisy = [ev for ev in ranked[1:] if _indistinguishable(best, ev, objective)]
    tied = [ev for ev in noisy if _close(best, ev, objective)]
    if not tied:
        return TieOutcome(ranked, comparison=_lead(best, runner_up, objective, runner_up in noisy))
    eligible = [ev for ev in tied if shown_within_margin(best, ev, objective)]
    group = _tie_order([best, *eligible], ranked)
    winner = group[0]
    after = [*group[1:], *(ev for ev in tied if ev not in eligible)]
    reasons = {ev.key: _why(winner, ev) for ev in group[1:]}
    reasons.update({ev.key: _kept_reason(best, ev, objective) for ev in after if ev.key not in reasons})
    rest = [ev for ev in ranked if ev is not winner and ev not in after]
    comparison = _tie_sentence(group, best, after, reasons, objective)
    over = best.label if winner is not best else None
    return TieOutcome([winner, *after, *rest], reasons, comparison, over)


def _winner_figure(winner: Evaluation, objective: str) -> str:
    interval = objective_interval(winner, objective)
    return _fmt(interval, objective) if interval is not None else "no interval recorded"
