"""What the budget left unmeasured could have been: each unmeasured candidate predicted from its
nearest measured neighbours, so the summary can say how much better the best of them might be.

The rule: a served-throughput surface is smooth along each knob (workers, threads, batch, delay,
runtime knobs), so a candidate is predicted no better than the upper end of the interval of the
measured candidates of its own backend and stack that differ from it in the fewest knobs. This is a
prediction, not a bound (tests/study/test_search_simulation.py measures how often a neighbour is
within a few % of the best); the words say so.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploybench.results import Candidate
from deploybench.study.rounds import Score
from deploybench.study.trial import TrialJob


@dataclass(frozen=True)
class Outlook:
    """The unmeasured candidate predicted best, from which neighbours, against the best probed."""

    trial_id: str
    predicted_rps: float
    neighbours: tuple[str, ...]
    best_probed_id: str
    best_probed_rps: float

    @property
    def percent_better(self) -> float:
        return 100.0 * (self.predicted_rps / self.best_probed_rps - 1.0)


def _knobs(candidate: Candidate) -> tuple[object, ...]:
    """The knobs compared; the runtime knobs count as one, compared by their field values (not
    key_suffix's string, which costs the most of a big space's outlook to build)."""
    return (
        candidate.workers,
        candidate.threads,
        candidate.max_batch_size,
        candidate.max_delay_ms,
        tuple(candidate.runtime.__dict__.values()),
    )


def knob_distance(a: Candidate, b: Candidate) -> int | None:
    """How many knobs differ; None where the backend, stack or device differ (not neighbours at all)."""
    if (a.backend, a.stack, a.device) != (b.backend, b.stack, b.device):
        return None
    return sum(x != y for x, y in zip(_knobs(a), _knobs(b), strict=True))


def _upper(score: Score) -> float:
    assert score.rps is not None
    return score.ci.high if score.ci is not None else score.rps


def predict(job: TrialJob, measured: list[tuple[TrialJob, Score]]) -> tuple[float, tuple[str, ...]] | None:
    """The job's predicted throughput (its nearest measured neighbours' best upper end), and which."""
    near: list[tuple[int, TrialJob, Score]] = []
    for other, score in measured:
        distance = knob_distance(job.trial.candidate, other.trial.candidate)
        if distance is not None and score.rps is not None:
            near.append((distance, other, score))
    if not near:
        return None
    closest = min(distance for distance, _, _ in near)
    nearest = [(other, score) for distance, other, score in near if distance == closest]
    best = max(_upper(score) for _, score in nearest)
    return best, tuple(other.trial_id for other, _ in nearest)


def outlook(unmeasured: list[TrialJob], measured: list[tuple[TrialJob, Score]]) -> Outlook | None:
    """The best-predicted unmeasured candidate against the best probed one (None: nothing to say)."""
    scored = [(job, score) for job, score in measured if score.rps is not None]
    if not unmeasured or not scored:
        return None
    best_job, best_score = max(scored, key=lambda pair: pair[1].rps or 0.0)
    predictions = [(job, predict(job, scored)) for job in unmeasured]
    known = [(job, p) for job, p in predictions if p is not None]
    if not known:
        return None
    job, (rps, neighbours) = max(known, key=lambda pair: pair[1][0])
    assert best_score.rps is not None
    return Outlook(job.trial_id, rps, neighbours, best_job.trial_id, best_score.rps)


def outlook_words(found: Outlook | None) -> str:
    """One clause for the search's summary line: how much better the best unmeasured might be, and why."""
    if found is None:
        return ""
    shown = ", ".join(found.neighbours[:2]) + (", ..." if len(found.neighbours) > 2 else "")
    why = f"from the upper end of its nearest measured neighbours' probe intervals ({shown})"
    percent = found.percent_better
    if percent >= 0.5:
        return (
            f"; the best of the unmeasured, {found.trial_id}, is predicted at most {percent:.0f}% better "
            f"than the best probed ({found.best_probed_id}), {why}"
        )
    level = "level with it" if percent > -0.5 else f"{-percent:.0f}% below it"
    return (
        f"; no unmeasured candidate is predicted to beat the best probed ({found.best_probed_id}): the "
        f"best of them, {found.trial_id}, is predicted {level}, {why}"
    )
