"""The study's time budget: what the search's rounds cost, and how many candidates fit in it.

Each round's time is estimated from its own settings (SearchSpec, LoadPlan): a probe runoff visits
every member once per round (probe_windows x (probe_warmup_s + probe_window_s)), round 2 the same
with its own windows, and each finalist gets the full load plan (a sweep 1, 2, 4, ... up to
max_concurrency, each point a warm-up and 3 agreeing windows). Every server started costs
SERVER_START_S on top (start, load, warm every batch size). These are estimates, calibrated on the
default study's serving time on 2 cores (docs/measurements.md, "Study duration"); building and timing
the variants is not in the budget (it happens before the plan exists).

Fitting the budget: a plan that fits is run as configured (the 2-core default study fits its default
budget of 10 minutes, so nothing changes there). One that does not probes K candidates, K the most
that fit: each served backend in turn (fastest in-process first), each one's default layout first and
then a sample spread evenly over its grid (spread()), since a served-throughput surface is smooth
along each knob and a neighbour of the best is within a few % of it (tests/study/
test_search_simulation.py measures how often that holds). The others are recorded as not measured.
A budget that holds not even one probe per served backend is refused, saying how much the smallest
such plan needs.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import Field

from deploybench.config import StrictModel
from deploybench.study.rounds import round_sizes
from deploybench.study.spec import LoadPlan, SearchSpec
from deploybench.study.trial import TrialJob

SERVER_START_S = 8.0
FINAL_WINDOWS = 3  # agreeing windows end a point (the load generator's stability rule)
DEFAULT_BUDGET_S = 600.0  # the default study on 2 cores fits 10 minutes
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(min|h|m|s|)")


class BudgetTooSmallError(ValueError):
    """A budget that holds no plan measuring every served backend at least once."""


def parse_budget(text: str) -> float:
    """Seconds of '10m', '90s', '1h30m', '1.5h' or a bare number of seconds."""
    cleaned = text.strip().lower()
    parts = _PART.findall(cleaned)
    if not cleaned or "".join(f"{n}{u}" for n, u in parts) != cleaned.replace(" ", ""):
        raise ValueError(f"budget {text!r}: give a duration such as 10m, 90s or 1h30m")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError(f"budget {text!r} must be more than 0")
    return seconds


def default_budget_s(cores: int, gpus: int = 0) -> float:
    """10 minutes up to 4 cores, 10 more per doubling above, 10 more per GPU: a machine with more
    cores has a space that grows with its factorizations, a GPU one of its own (batch to 64,
    instances), and a larger machine costs more per hour to leave idle while it is measured."""
    return DEFAULT_BUDGET_S * (max(1.0, math.log2(max(cores, 1)) - 1.0) + gpus)


class Phase(StrictModel):
    name: str
    candidates: int
    servers: int
    seconds: float


class TimePlan(StrictModel):
    """The search's rounds for one pool of candidates, estimated, against the budget."""

    space: int = Field(description="candidates the search could measure")
    probed: int = Field(description="candidates the probe measures (each backend in turn, spread)")
    run_longer: int
    finalists: int
    phases: list[Phase]
    budget_s: float | None
    total_s: float

    @property
    def fits(self) -> bool:
        return self.budget_s is None or self.total_s <= self.budget_s


def _runoff_s(members: int, rounds: int, window_s: float, warmup_s: float) -> float:
    return members * (SERVER_START_S + rounds * (warmup_s + window_s))


def probe_phase(spec: SearchSpec, contenders: int) -> Phase:
    """Every contender's probe; a group past probe_servers repeats the shared reference."""
    groups = 1 if contenders <= spec.probe_servers else math.ceil((contenders - 1) / (spec.probe_servers - 1))
    servers = contenders + (groups - 1)
    seconds = _runoff_s(servers, spec.probe_windows, spec.probe_window_s, spec.probe_warmup_s)
    return Phase(name="probe", candidates=contenders, servers=servers, seconds=seconds)


def round2_phase(spec: SearchSpec, kept: int, references: int) -> Phase:
    servers = kept + references
    rounds, window, warm = spec.runoff_rounds, spec.runoff_window_s, spec.runoff_warmup_s
    if not rounds:
        rounds, window, warm = spec.round2_windows, spec.round2_window_s, 0.0
    seconds = _runoff_s(servers, rounds, window, warm) + servers * spec.runoff_first_warmup_s
    return Phase(name="round 2", candidates=kept, servers=servers, seconds=seconds)


def final_phase(load: LoadPlan, finalists: int, always: int) -> Phase:
    """The full plan for each finalist (a sweep to max_concurrency), the fixed levels for the others."""
    sweep = {2**i for i in range(int(math.log2(load.max_concurrency)) + 1)}
    levels = len(sweep | set(load.include_concurrency))
    point = load.warmup_s + FINAL_WINDOWS * load.window_s
    fixed = max(1, len(load.include_concurrency)) * point
    seconds = finalists * (SERVER_START_S + levels * point) + always * (SERVER_START_S + fixed)
    return Phase(name="finals", candidates=finalists + always, servers=finalists + always, seconds=seconds)


def time_plan(
    spec: SearchSpec, load: LoadPlan, contenders: int, always: int = 1, budget_s: float | None = None
) -> TimePlan:
    """The rounds for `contenders` probed (round 2 beside the `always` eager baseline), estimated."""
    longer, final = round_sizes(contenders, spec) if contenders > spec.finalists else (0, contenders)
    kept = min(contenders, longer + spec.probe_tied) if longer else 0
    finalists = min(kept, final + spec.max_tied) if longer else contenders
    phases = [probe_phase(spec, contenders), round2_phase(spec, kept, always)] if longer else []
    phases.append(final_phase(load, finalists, always))
    total = sum(p.seconds for p in phases)
    return TimePlan(
        space=contenders,
        probed=contenders if longer else 0,
        run_longer=kept,
        finalists=finalists,
        phases=phases,
        budget_s=budget_s,
        total_s=round(total, 1),
    )


def fit_budget(
    spec: SearchSpec, load: LoadPlan, space: int, budget_s: float, backends: int = 1, always: int = 1
) -> TimePlan:
    """The plan probing as many of the `space` candidates as fit in `budget_s`;
    BudgetTooSmallError when not even one probe per served backend fits."""
    whole = time_plan(spec, load, space, always, budget_s)
    if whole.fits:
        return whole
    least = time_plan(spec, load, min(space, backends), always, budget_s)
    if not least.fits:
        raise BudgetTooSmallError(
            f"a budget of {budget_s / 60:.1f} min holds not even one probe of each of the {backends} "
            f"served backend(s): that plan needs about {least.total_s / 60:.1f} min (--budget "
            f"{math.ceil(least.total_s / 60)}m)"
        )
    low, high = min(space, backends), space  # low fits, high does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if time_plan(spec, load, middle, always, budget_s).fits else (low, middle)
    fitted = time_plan(spec, load, low, always, budget_s)
    return fitted.model_copy(update={"space": space})


def spread(count: int) -> list[int]:
    """0..count-1 in bit-reversed order (0, 4, 2, 6, 1, 5, 3, 7 for 8): any first K of it covers the
    whole range evenly, so a cut of a backend's grid (ordered workers, then batch, then the rest)
    keeps layouts and batch sizes from every part of it, each near the others, instead of the
    first workers' grid alone."""
    bits = max(1, (count - 1).bit_length())
    ranks = sorted(range(2**bits), key=lambda i: int(f"{i:0{bits}b}"[::-1], 2))
    return [i for i in ranks if i < count]


def each_backend_in_turn(jobs: list[TrialJob]) -> list[TrialJob]:
    """The jobs backend by backend in turn (backends in plan order), each backend's spread over its
    grid (its default layout first): a budget that cuts the list keeps every backend, and a sample
    of every backend's whole grid, not one backend's first workers alone."""
    by_backend: dict[str, list[TrialJob]] = {}
    for job in jobs:
        by_backend.setdefault(job.trial.candidate.backend, []).append(job)
    queues = [[queue[i] for i in spread(len(queue))] for queue in by_backend.values()]
    ordered: list[TrialJob] = []
    for index in range(max(map(len, queues), default=0)):
        ordered += [queue[index] for queue in queues if index < len(queue)]
    return ordered


def within_budget(
    jobs: list[TrialJob], spec: SearchSpec, load: LoadPlan, budget_s: float, references: int
) -> tuple[list[TrialJob], dict[str, str], TimePlan]:
    """The jobs the probe measures within `budget_s` (plan order kept), the others with why, the plan."""
    backends = len({job.trial.candidate.backend for job in jobs})
    plan = fit_budget(spec, load, len(jobs), budget_s, backends, max(1, references))
    if plan.probed >= len(jobs) or plan.probed == 0:
        return jobs, {}, plan
    kept = {job.trial_id for job in each_backend_in_turn(jobs)[: plan.probed]}
    why = (
        f"not measured: the time budget ({budget_s / 60:.1f} min) holds the probe of {plan.probed} of "
        f"{len(jobs)} candidates (each backend in turn, spread over its grid); no measurement bounds this one"
    )
    left = {j.trial_id: why for j in jobs if j.trial_id not in kept}
    return [j for j in jobs if j.trial_id in kept], left, plan


def search_budget(spec: SearchSpec, jobs: list[TrialJob], pools: int = 1) -> float:
    """The search's budget: the study's, or sized to the machine's cores (the widest candidate's),
    once per stack searched (each stack's candidates are searched among their own: study/search.py)."""
    if spec.budget_s is not None:
        return spec.budget_s
    cores = max((j.trial.candidate.workers * j.trial.candidate.threads for j in jobs), default=1)
    gpus = int(any(j.trial.candidate.device.startswith("cuda") for j in jobs))
    return default_budget_s(cores, gpus) * max(1, pools)


def budget_words(counts: dict[str, Any]) -> str:
    """The budget, and how much of the space it left unmeasured (nothing where it held every probe)."""
    if not counts.get("unmeasured"):
        return ""
    return (
        f"; measured {counts['space'] - counts['unmeasured']} of {counts['space']} candidates within the "
        f"{counts['budget_s'] / 60:.1f} min budget (the whole space would take about "
        f"{counts['planned_s'] / 60:.0f} min): "
        f"{counts['unmeasured']} not measured (each backend in turn, spread over its grid)"
        + counts.get("outlook", "")
    )


def budget_shares(
    pools: dict[str, list[TrialJob]], spec: SearchSpec, load: LoadPlan, budget_s: float, references: int
) -> tuple[float, dict[str, float | None]]:
    """The whole plan's estimated seconds, and each pool's share of the budget: None (nothing cut)
    where the whole plan fits, else in proportion to each pool's estimated time."""
    times = {
        stack: time_plan(spec, load, len(pool), max(1, references)).total_s for stack, pool in pools.items()
    }
    total = round(sum(times.values()), 1)
    if total <= budget_s:
        return total, dict.fromkeys(pools)
    return total, {stack: budget_s * seconds / total for stack, seconds in times.items()}
