"""One line per ranked candidate: why the winner won and why each other one ranks where it does.

Words follow the outcome: a pick the tie rule made says so (never "lowest cost" for it), a tie the
paired runoff found says it was paired, and a lead is stated with the numbers behind it.
"""

from __future__ import annotations

from collections.abc import Callable

from deploybench.recommend.baseline import pct_change
from deploybench.recommend.records import Evaluation
from deploybench.recommend.ties import PairedRatio, TieOutcome, runoff_pair


def _versus(ev: Evaluation, ref: Evaluation, objective: str) -> str:
    pair = runoff_pair(ref, ev, objective)
    if pair is not None and _reads_better(ev, ref, objective):  # the runoff set the order: say so
        return _behind_in_runoff(ev, ref, objective, pair)
    if objective == "cost" and ev.cost_per_1m is not None and ref.cost_per_1m is not None:
        pct = pct_change(ev.cost_per_1m, ref.cost_per_1m)
        return f"more expensive than {ref.label} by {pct:.0f}% per 1M" if round(pct) else ""
    if objective == "p99":
        pct = pct_change(ev.p99_ms or 0, ref.p99_ms or 1)
        return f"p99 {pct:.0f}% higher than {ref.label}" if round(pct) else ""
    pct = -pct_change(ev.throughput_rps or 0, ref.throughput_rps or 1)
    return f"{pct:.0f}% less throughput than {ref.label}" if round(pct) else ""


def _own_change(ev: Evaluation, ref: Evaluation, objective: str) -> float | None:
    """ev's own figure on the objective against ref's, signed so that above 0 reads better."""
    own = {
        "cost": (ev.cost_per_1m, ref.cost_per_1m, -1),
        "throughput": (ev.throughput_rps, ref.throughput_rps, 1),
    }
    mine, theirs, sign = own.get(objective, (None, None, 1))
    return None if mine is None or not theirs else sign * pct_change(mine, theirs)


def _reads_better(ev: Evaluation, ref: Evaluation, objective: str) -> bool:
    """ev's own point reads better than ref's though ranked after it (the runoff's order decided)."""
    change = _own_change(ev, ref, objective)
    return change is not None and round(change) > 0


def _behind_in_runoff(ev: Evaluation, ref: Evaluation, objective: str, pair: PairedRatio) -> str:
    """Behind `ref` side by side (on one machine's price the slower is the dearer), though its own
    peak point reads better on the objective: that reading was taken at another time, so it says so."""
    name = "cost per 1M" if objective == "cost" else "throughput"
    change = _own_change(ev, ref, objective) or 0.0
    shown = -change if objective == "cost" else change
    return (
        f"{pair.ratio:.2f}x the throughput of {ref.label} ({pair.words()}); its own peak point reads "
        f"{shown:+.0f}% {name}, but the points were measured at different times, not paired"
    )


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


def _tie_evidence(ev: Evaluation, winner: Evaluation) -> str:
    """What made the two tied: their paired runoff, or overlapping intervals of separate points."""
    if runoff_pair(winner, ev, "throughput") is not None:
        return "tied in the paired runoff, estimates within 5%"
    return "95% intervals overlap, estimates within 5%"


def explain(
    ranked: list[Evaluation],
    front_keys: set[str],
    objective: str,
    outcome: TieOutcome,
    dominates: Callable[[Evaluation, Evaluation], bool],
) -> None:
    """One line each; the outcome's `tied` maps a statistically tied candidate's key to the tie rule's
    words, and names the best estimate when the tie rule chose another."""
    winner = ranked[0]
    behind = [
        ev for ev in ranked[1:] if runoff_pair(winner, ev, objective) and _reads_better(ev, winner, objective)
    ]
    best = "fastest side by side in the paired runoff" if behind else OBJECTIVE_WORDS[objective]
    winner.reason = (
        f"recommended: {best} of {len(ranked)} candidate(s) meeting the constraints"
        if outcome.chosen_by_rule_over is None
        else f"recommended: chosen by the tie rule over {outcome.chosen_by_rule_over}, the best estimate "
        f"of {len(ranked)} candidate(s) meeting the constraints"
    )
    for ev in ranked[1:]:
        dominator = next((o for o in ranked if dominates(o, ev)), None)
        if dominator is not None:
            ev.reason = f"dominated by {dominator.label} ({_deltas(ev, dominator)})"
            continue
        if ev.key in outcome.tied:
            detail = (
                f"statistically tied with {winner.label} on {objective} ({_tie_evidence(ev, winner)}); "
                f"ranked after it by the tie rule ({outcome.tied[ev.key]})"
            )
        else:
            tie = f"tied with {winner.label} on {objective}; ranked after it by the tie-break"
            detail = _versus(ev, winner, objective) or tie
        ev.reason = detail + " (on the Pareto front)" * (ev.key in front_keys)
