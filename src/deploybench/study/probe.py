"""Search round 1, the probe, as paired runoffs (study/runoff.py), in groups that fit in memory.

Why paired: a fresh server's first window reads slow and the host drifts over minutes by more than
the gaps the probe's cut decides, so candidates probed one after another are ordered by the drift.
Served side by side and visited in turn (the order reversed every round), after each one has warmed
every batch size it can form, two candidates compare by their window-by-window throughput ratio.
Why groups: every contender's server is up for the whole runoff, and each holds its workers' memory.
At most `probe_servers` are up at once, fewer where a share of the machine's memory (its total, so a
resumed study forms the same groups) would not hold that many of the widest (server_memory_mb per
worker). Past that the probe runs as several runoffs, each with the
same reference candidate (the first in plan order: the fastest backend in-process at default
knobs), so candidates of different groups compare through their ratios to it (study/rounds.py).
If the reference's record in a group is unusable, that group's candidates are scored unpaired.
"""

from __future__ import annotations

import math
from dataclasses import replace

from deploybench.recommend.ties import PairedRatio, geometric_mean, paired_ratio
from deploybench.results import TrialRecord
from deploybench.study.rounds import Score, missed_bound
from deploybench.study.runoff import RunoffPlan
from deploybench.study.spec import SearchSpec
from deploybench.study.trial import TrialJob

PROBE = "#probe"


def group_size(spec: SearchSpec, jobs: list[TrialJob], available_mb: float) -> int:
    """How many probe servers may be up at once: probe_servers, fewer where the memory available
    would not hold that many servers as wide as the widest contender (at least two: a pair)."""
    widest = max((job.trial.candidate.workers for job in jobs), default=1)
    fits = int(available_mb // (spec.server_memory_mb * widest))
    return max(2, min(spec.probe_servers, fits))


def probe_groups(jobs: list[TrialJob], size: int) -> list[list[TrialJob]]:
    """The probe's runoffs, each a list of round jobs (trial id KEY#probe): all at once where they
    fit, else the first job (the reference) in every group with an even share of the others (its
    record in group g > 1 is KEY#probe@g)."""
    rounds = [replace(job, trial_id=job.trial_id + PROBE) for job in jobs]
    if len(rounds) <= size:
        return [rounds]
    reference, rest = rounds[0], rounds[1:]
    count = math.ceil(len(rest) / (size - 1))
    share = math.ceil(len(rest) / count)
    groups = [[reference, *rest[i : i + share]] for i in range(0, len(rest), share)]
    for index, group in enumerate(groups[1:], start=2):
        group[0] = replace(reference, trial_id=f"{reference.trial_id}@{index}")
    return groups


def probe_plan(spec: SearchSpec, level: int, group: int, groups: int, p99_ms: float | None) -> RunoffPlan:
    """One probe runoff: probe_windows rounds of one probe_window_s window each, probe_warmup_s
    before each, every batch size warmed before a contender's first window."""
    label = "probe" if groups == 1 else f"probe group {group} of {groups}"
    return RunoffPlan(
        level,
        spec.probe_window_s,
        spec.probe_warmup_s,
        spec.probe_windows,
        label=label,
        warm_batches=True,
        at_knee=p99_ms is not None,
    )


def _usable(record: TrialRecord | None) -> bool:
    return record is not None and record.status != "failed" and record.runoff is not None


def _reference_mean(references: list[TrialRecord]) -> float | None:
    """The reference's throughput over every group it ran in (the scale the ratios are put on)."""
    rps = [value for record in references if record.runoff for value in record.runoff.rps]
    return geometric_mean(rps) if rps else None


def _member_score(
    trial_id: str, record: TrialRecord, reference: TrialRecord | None, scale: float | None, p99: float | None
) -> Score:
    """A candidate's probe score: its own throughput, or through the reference where groups differ."""
    assert record.runoff is not None
    missed = missed_bound(record.points, p99)
    own = geometric_mean(record.runoff.rps)
    pair = paired_ratio(reference.runoff, record.runoff) if reference and reference.runoff else None
    if pair is None or scale is None:
        return Score(trial_id, own, runoff=record.runoff, missed=missed)
    return Score(trial_id, scale * pair.ratio, runoff=record.runoff, to_reference=pair, missed=missed)


def probe_scores(
    groups: list[list[TrialJob]], known: dict[str, TrialRecord], p99_ms: float | None
) -> list[Score]:
    """Every probed candidate's score (trial id without #probe), from the groups' stored records."""
    references = [known.get(group[0].trial_id) for group in groups]
    usable_refs = [r for r in references if r is not None and _usable(r)]
    scale = _reference_mean(usable_refs) if len(groups) > 1 else None
    scores: list[Score] = []
    for index, group in enumerate(groups):
        reference = references[index] if _usable(references[index]) else None
        members = group if index == 0 else group[1:]
        for job in members:
            scores.append(_score(job, known.get(job.trial_id), reference, scale, p99_ms))
    return scores


def _score(
    job: TrialJob,
    record: TrialRecord | None,
    reference: TrialRecord | None,
    scale: float | None,
    p99: float | None,
) -> Score:
    trial_id = job.trial_id.removesuffix(PROBE)
    if record is None or record.retryable:
        why = record.reason if record is not None else "not measured"
        return Score(trial_id, None, failure=why, lost=True)
    if not _usable(record):
        return Score(trial_id, None, failure=record.reason or "no successful request")
    if reference is not None and reference.trial_id == job.trial_id and scale is not None:
        rounds = len(record.runoff.rps) if record.runoff else 0
        one = PairedRatio(1.0, 1.0, 1.0, rounds)
        return Score(
            trial_id, scale, runoff=record.runoff, to_reference=one, missed=missed_bound(record.points, p99)
        )
    return _member_score(trial_id, record, reference, scale, p99)
