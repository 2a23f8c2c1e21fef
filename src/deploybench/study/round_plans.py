"""What each round of the search measures with: the probe's concurrency, a round's one-point plan and
context, the baseline's fixed levels, and the finalists' groups (study/search.py runs the rounds)."""

from __future__ import annotations

from dataclasses import replace

from deploybench.study.protect import is_baseline
from deploybench.study.spec import LoadPlan, StudyConfig
from deploybench.study.trial import TrialContext, TrialJob


def probe_concurrency(config: StudyConfig, jobs: list[TrialJob]) -> int:
    """Where every candidate peaks: the study's c16 level (every batch-1 layout on a few cores is
    saturated by then), raised to 2 x workers x max batch,
    so a batching server has a full batch forming while the one before it infers."""
    plan = config.load
    level = max(plan.include_concurrency, default=plan.max_concurrency)
    needed = [2 * j.trial.candidate.workers * j.trial.candidate.max_batch_size for j in jobs]
    return max([level, *needed])


def round_plan(plan: LoadPlan, concurrency: int, window_s: float, windows: int) -> LoadPlan:
    """One closed-loop point at `concurrency`, the full plan's other settings kept."""
    return plan.model_copy(
        update={
            "concurrency_levels": [concurrency],
            "include_concurrency": [],
            "max_concurrency": concurrency,
            "window_s": window_s,
            "max_windows": windows,
            "rate_search": False,
        }
    )


def round_context(ctx: TrialContext, plan: LoadPlan) -> TrialContext:
    """The study's context measuring with `plan` and no SLO (a round compares throughput only)."""
    constraints = ctx.config.constraints.model_copy(update={"p99_ms": None})
    return replace(ctx, config=ctx.config.model_copy(update={"load": plan, "constraints": constraints}))


def baseline_plan(plan: LoadPlan) -> LoadPlan:
    """The baseline's points: the plan's fixed concurrency levels (16 by default), no sweep to a
    peak, no rate search; a slow eager server would otherwise take a third of the study."""
    return plan.model_copy(
        update={
            "concurrency_levels": plan.include_concurrency,
            "include_concurrency": [],
            "rate_search": False,
        }
    )


def final_groups(ctx: TrialContext, jobs: list[TrialJob]) -> list[tuple[TrialContext, list[TrialJob]]]:
    """The finalists to measure, each group with its plan: the baseline its own (unless
    search.baseline_sweep, the search is off, or the plan has no fixed level to compare at), every
    other one the full plan."""
    spec = ctx.config.search
    if not spec.enabled or spec.baseline_sweep or not ctx.config.load.include_concurrency:
        return [(ctx, jobs)] if jobs else []
    baseline = [job for job in jobs if is_baseline(job)]
    others = [job for job in jobs if not is_baseline(job)]
    plan = baseline_plan(ctx.config.load)
    base_ctx = replace(ctx, config=ctx.config.model_copy(update={"load": plan}))
    return [(c, group) for c, group in ((base_ctx, baseline), (ctx, others)) if group]
