"""`deploybench run --plan-only`: the candidate space and the time plan of a study on a machine, without
measuring anything, so a user previews the study for the machine they will rent and tests check the
space of machines we do not have.

Nothing is built: which backends pass on that machine, and which are fastest, is not known before
the study. Every backend that runs on the machine's devices is listed with its own space (the
machine's grid over the knobs it honours: study/space.py, study/plan.py). The search's space is
bounded from above by eager at its default knobs plus the serve_top largest backend spaces (the
study serves eager and the serve_top fastest in-process), and the time plan is that bound's
(study/budget.py), so the real study fits the budget at least as easily.
"""

from __future__ import annotations

from pydantic import Field

from deploybench.backends import all_backends
from deploybench.config import StrictModel
from deploybench.study.budget import TimePlan, default_budget_s, fit_budget
from deploybench.study.plan import BASELINE, VariantSummary, knob_candidates
from deploybench.study.space import MachineShape, study_grid
from deploybench.study.spec import StudyConfig


class BackendSpace(StrictModel):
    """One backend's candidates on the machine."""

    backend: str
    device: str
    candidates: int
    runtime_knobs: list[str] = Field(description="RuntimeKnobs fields swept for it (more than one value)")


class PlanPreview(StrictModel):
    """The space and the time plan of a study on one machine, as --plan-only prints it."""

    machine: MachineShape
    layouts: dict[str, list[str]] = Field(description="device -> workers x threads")
    batch_sizes: dict[str, list[int]]
    runtime_values: dict[str, dict[str, list[int | bool | str | None]]]
    backends: list[BackendSpace]
    searched: int = Field(description="upper bound on the candidates the search measures")
    budget_s: float
    time: TimePlan


def _devices(shape: MachineShape) -> list[str]:
    return ["cpu", "cuda"] if shape.gpu else ["cpu"]


def _backend_space(config: StudyConfig, shape: MachineShape, name: str, device: str) -> BackendSpace:
    cls = all_backends()[name]
    summary = VariantSummary(name, "passed", device=device, knobs=cls.honoured_knobs())
    grid = study_grid(config, shape, device)
    found = knob_candidates(summary, grid, shape.cores, oversubscribe=config.oversubscribe)
    swept = [knob for knob in sorted(summary.knobs) if len(set(getattr(grid, knob))) > 1]
    return BackendSpace(backend=name, device=device, candidates=len(found), runtime_knobs=swept)


def _grid_summary(config: StudyConfig, shape: MachineShape) -> tuple[dict, dict, dict]:
    layouts, batches, runtime = {}, {}, {}
    for device in _devices(shape):
        grid = study_grid(config, shape, device)
        threads = {w: grid.threads or [max(1, shape.cores // w)] for w in grid.workers}
        layouts[device] = [f"{w} x {t}" for w in grid.workers for t in threads[w] if w * t <= shape.cores]
        batches[device] = list(grid.max_batch_size)
        runtime[device] = {
            name: list(values)
            for name in ("streams", "inter_op_threads", "overlap", "spin", "thread_pinning", "decoder")
            if len(values := getattr(grid, name)) > 1
        }
    return layouts, batches, runtime


def plan_preview(config: StudyConfig, shape: MachineShape, budget_s: float | None = None) -> PlanPreview:
    """The machine's space per backend and the search's time plan within the budget (BudgetTooSmallError
    when it holds not even one probe of each backend the study serves)."""
    devices = _devices(shape)
    names = config.backends or sorted(all_backends())
    spaces = [
        _backend_space(config, shape, name, cls.device)
        for name in names
        if (cls := all_backends().get(name)) is not None and cls.device in devices
    ]
    contenders = sorted((s.candidates for s in spaces if s.backend != BASELINE), reverse=True)
    top = contenders[: config.serve_top] if config.serve_top is not None else contenders
    searched = sum(top) + 1  # eager at its default knobs: the baseline
    budget = budget_s or config.search.budget_s or default_budget_s(shape.cores, min(shape.gpus, 1))
    time = fit_budget(config.search, config.load, searched, budget, backends=max(1, len(top)))
    layouts, batches, runtime = _grid_summary(config, shape)
    return PlanPreview(
        machine=shape,
        layouts=layouts,
        batch_sizes=batches,
        runtime_values=runtime,
        backends=spaces,
        searched=searched,
        budget_s=budget,
        time=time,
    )
