"""Which served candidates the search never drops, and which it adds back, so stacks compare like for like.

Protected (always fully measured, never probed): the eager baseline (what every speed-up is measured
against), each other stack's candidate at its default knobs (the stack as it ships), and deploybench's
own server at those very knobs. Every other candidate of every stack is searched. Each other-stack
candidate that ends up fully measured (a finalist) brings deploybench's server at its very knobs into
the final too, even where the search dropped it: a stack's row with no deploybench row at the same
knobs beside it would compare the stacks and the knobs at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from deploybench.config import RuntimeKnobs
from deploybench.results import DEFAULT_STACK, Candidate, is_baseline_candidate
from deploybench.study.trial import TrialJob


def at_default_knobs(candidate: Candidate) -> bool:
    """One worker, no batching, default runtime knobs: what a server does when told nothing."""
    return candidate.workers == 1 and candidate.max_batch_size == 1 and candidate.runtime == RuntimeKnobs()


def is_baseline(job: TrialJob) -> bool:
    """Eager at default knobs on deploybench: what every other candidate's speed-up is measured against."""
    return is_baseline_candidate(job.trial.candidate)


def twin(candidate: Candidate) -> Candidate:
    """deploybench's own server at the very knobs another stack's candidate was given."""
    return candidate.model_copy(update={"stack": DEFAULT_STACK})


def stack_default_keys(jobs: Iterable[TrialJob]) -> set[str]:
    """Each other stack's candidate at its default knobs (per backend): one worker, batch 1, and of
    those the most threads (the plan's default gives that worker every core; a `threads:` grid can add
    fewer, which are searched)."""
    best: dict[tuple[str, str], Candidate] = {}
    for job in jobs:
        c = job.trial.candidate
        if c.stack == DEFAULT_STACK or not at_default_knobs(c):
            continue
        held = best.get((c.stack, c.backend))
        if held is None or c.threads > held.threads:
            best[(c.stack, c.backend)] = c
    return {c.key for c in best.values()}


def stack_twin_keys(jobs: Sequence[TrialJob]) -> set[str]:
    """The keys deploybench's server has at the default knobs of another stack's candidate."""
    defaults = stack_default_keys(jobs)
    return {twin(j.trial.candidate).key for j in jobs if j.trial.candidate.key in defaults}


def protected_jobs(jobs: Sequence[TrialJob]) -> list[TrialJob]:
    """The jobs is_protected keeps, among `jobs`, with the stacks' default and twin keys found once
    (asking is_protected job by job finds them again for every job: quadratic in the space)."""
    defaults = stack_default_keys(jobs)
    twins = {twin(j.trial.candidate).key for j in jobs if j.trial.candidate.key in defaults}
    kept = []
    for job in jobs:
        candidate = job.trial.candidate
        keys = defaults if candidate.stack != DEFAULT_STACK else twins
        if is_baseline(job) or candidate.key in keys:
            kept.append(job)
    return kept


def is_protected(job: TrialJob, jobs: Sequence[TrialJob] = ()) -> bool:
    """Never dropped by the search: the baseline, each other stack's default-knob candidate, and
    deploybench's own server at those very knobs (among `jobs`); every other candidate is searched."""
    candidate = job.trial.candidate
    if is_baseline(job):
        return True
    if candidate.stack != DEFAULT_STACK:
        return candidate.key in stack_default_keys([*jobs, job])
    return candidate.key in stack_twin_keys(jobs)


def twins_to_add(jobs: Sequence[TrialJob], final: Iterable[str]) -> dict[str, str]:
    """deploybench's twins (trial id -> why) of the other stacks' finalists that are not finalists
    themselves, among `jobs`: every other stack's fully measured row gets its like-for-like row."""
    chosen = set(final)
    by_key = {j.trial.candidate.key: j for j in jobs if j.trial.candidate.stack == DEFAULT_STACK}
    added: dict[str, str] = {}
    for job in jobs:
        c = job.trial.candidate
        if c.stack == DEFAULT_STACK or job.trial_id not in chosen:
            continue
        mate = by_key.get(twin(c).key)
        if mate is not None and mate.trial_id not in chosen:
            added[mate.trial_id] = f"deploybench's server at the knobs of {c.stack}'s finalist"
    return added
