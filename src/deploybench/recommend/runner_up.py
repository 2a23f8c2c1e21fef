"""What the search measured, used by the ranking: the winner's real runner-up (the best other contender
of its own paired runoff) and each dropped candidate's figure in the last round it ran.

The ranking holds only fully measured candidates, which by default are the winner and the eager
baseline, so the next row of the ranking is rarely the configuration the winner beat. The paired
runoff of the search's round 2 served every contender side by side, so the best of the others there
(never the eager baseline, which is the reference, not a contender) is the runner-up, and the paired
ratio of the two is the one comparison that does not depend on the host's drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deploybench.recommend.records import Evaluation, trial_label
from deploybench.recommend.ties import PairedRatio, geometric_mean, paired_ratio
from deploybench.results import Interval, RunoffSample, TrialRecord, is_baseline_candidate


@dataclass(frozen=True)
class Contender:
    """A candidate that ran in a paired runoff: its key, its label and its rounds."""

    key: str
    label: str
    runoff: RunoffSample
    baseline: bool  # the eager baseline: the reference the runoff carries, never a runner-up


@dataclass(frozen=True)
class RunnerUp:
    label: str
    pair: PairedRatio  # the runner-up's throughput over the winner's, round by round
    concurrency: int

    @property
    def beaten(self) -> bool:
        """Beyond the noise: the whole 95% interval of the ratio lies below 1."""
        return self.pair.high < 1.0

    def words(self) -> str:
        pair = self.pair
        verdict = (
            "the winner leads beyond the noise" if self.beaten else "not beyond the noise (it reaches 1)"
        )
        return (
            f"runner-up {self.label} at {pair.ratio:.2f}x the winner's throughput "
            f"({pair.low:.2f}-{pair.high:.2f}, paired runoff at {self.concurrency} clients, "
            f"{pair.rounds} rounds side by side): {verdict}"
        )


def real_runner_up(winner: Evaluation, contenders: Sequence[Contender]) -> RunnerUp | None:
    """The best other contender of the winner's runoff, paired with it; None without a runoff."""
    if winner.runoff is None:
        return None
    group = winner.runoff.group
    rivals = [c for c in contenders if c.runoff.group == group and c.key != winner.key and not c.baseline]
    for rival in sorted(rivals, key=lambda c: -geometric_mean(c.runoff.rps)):
        pair = paired_ratio(winner.runoff, rival.runoff)
        if pair is not None:
            return RunnerUp(rival.label, pair, winner.runoff.concurrency)
    return None


def runoff_contenders(trials: Sequence[TrialRecord]) -> list[Contender]:
    """Every candidate a paired runoff served (the search's round-2 records included), once each."""
    found: dict[tuple[str, str], Contender] = {}
    for trial in trials:
        if trial.runoff is not None:
            key = f"{trial.candidate.key}@{trial.machine.instance or trial.machine.label}"
            found[key, trial.runoff.group] = Contender(
                key, trial_label(trial), trial.runoff, is_baseline_candidate(trial.candidate)
            )
    return list(found.values())


def runner_up_words(ranked: list[Evaluation], trials: Sequence[TrialRecord]) -> str | None:
    """The winner's real runner-up in words, from every record that ran in a paired runoff."""
    if not ranked:
        return None
    found = real_runner_up(ranked[0], runoff_contenders(trials))
    return found.words() if found is not None else None


def _round_figure(record: TrialRecord) -> tuple[float, Interval | None, str] | None:
    """A round's figure: a runoff's geometric mean over its rounds, else its best valid point's."""
    stage = "round 2" if record.trial_id.endswith("#round2") else "probe"
    if record.runoff is not None:
        return geometric_mean(record.runoff.rps), None, f"{stage}, paired runoff"
    valid = [p for p in record.points if p.invalid_reason is None and p.ok > 0]
    if not valid:
        return None
    best = max(valid, key=lambda p: p.throughput_rps)
    return best.throughput_rps, best.throughput_ci, stage


def add_search_figures(evaluations: Sequence[Evaluation], search_records: Sequence[TrialRecord]) -> None:
    """Every candidate the search measured shows its own figure: a dropped one (no operating point)
    gets the figure of the last round it ran, labelled with that round."""
    by_id = {record.trial_id: record for record in search_records}
    for ev in evaluations:
        if ev.throughput_rps is not None:
            continue
        record = by_id.get(f"{ev.trial_id}#round2") or by_id.get(f"{ev.trial_id}#probe")
        figure = _round_figure(record) if record is not None else None
        if figure is not None:
            ev.search_rps, ev.search_ci, ev.search_round = figure
