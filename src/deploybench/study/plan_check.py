"""Check a traffic plan for real: serve its candidate on this machine exactly as its trial did, offer
one instance the most the plan gives it, and 20% more, and compare each measured p99 with the bound.

Rules, and why:
- The rate checked is the most one instance is planned to take: the rate per instance the plan
  stands on times the utilisations that are about the instance (curve: the p99 interval; arrivals:
  the margin kept for evenly spaced points). The lag utilisation is not applied: it is what keeps
  an instance at that rate while new capacity starts, so at the worst moment of a rise an instance
  does take the rate checked here.
- The traffic is replayed as its busiest moment for one instance, time-compressed: Poisson arrivals
  (seeded), as independent users send and as MLPerf LoadGen's Server scenario issues them, held
  for as long as the early-stopping verdict needs (the study's own rule for a rate-search point,
  sweeps.verdict_config) rather than for the hour it would last.
- The server is started by the study's own rule (trial.candidate_launch: same stack, knobs, model,
  weights and artifact cache), the load by the study's load plan (study.yaml), so the check
  measures what the trial measured, at the plan's rate. Before the first point it is warmed as the
  runoff warms a contender (every batch shape, runoff.batch_warmups) and then held for WARM_S at
  its knee (2 x workers x max batch in flight): the trial's rate search ran on a server its closed
  sweep had warmed, and a runtime's first calls are slow enough to flood a cold server's queue.
- The outcome comes from the early-stopping verdicts, never a raw p99: tight (the planned rate meets
  the bound, 20% more does not), margin (both meet it: the plan keeps more than 20%, and says why
  from its own figures), fails (the planned rate does not meet the bound on this machine) or
  undecided (too few requests for a verdict).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from deploybench.config import LoadConfig, StrictModel
from deploybench.hardware import detect_cpu
from deploybench.load import LoadError, Target, run_load, run_points
from deploybench.load.sweeps import verdict_config
from deploybench.recommend.capacity import TrafficPlan
from deploybench.results import Candidate, Interval, LoadPoint, TrialRecord
from deploybench.stacks import StackServer, get_stack
from deploybench.stacks.process import ServerStartError
from deploybench.study.measure import RATE_SEARCH_ARRIVAL, load_config
from deploybench.study.runner import study_payloads
from deploybench.study.runoff import batch_warmups
from deploybench.study.spec import StudyConfig
from deploybench.study.trial import TrialFiles, candidate_launch

OVER = 0.2  # the second point: this much above the planned rate
CHECK_SEED = 26  # the Poisson arrivals' seed: the same check, the same schedule
WARM_S = 5.0  # the closed-loop warm-up at the knee before the first point (see the rules)
Outcome = Literal["tight", "margin", "fails", "undecided"]


class PlanCheckError(ValueError):
    """The check could not run (no plan, no config, the server did not start); the message says why."""


class CheckPoint(StrictModel):
    """One open-loop point of the check: the rate offered, what came back, the verdict on the bound."""

    name: str = Field(description="planned, or +20%: which rate of the check")
    rate: float = Field(description="arrival rate offered to the one instance (req/s)")
    arrival: str
    ok: int
    errors: dict[str, int] = Field(default_factory=dict, description="failed requests by kind")
    throughput_rps: float
    p99_ms: float
    p99_ci: Interval | None = None
    early_stopping_p99_ms: float | None = Field(
        None, description="MLPerf LoadGen's early-stopping p99 estimate (99% confidence)"
    )
    verdict: Literal["met", "missed", "undecided"]
    flags: list[str] = Field(default_factory=list)


class PlanCheck(StrictModel):
    """The plan's per-instance rate measured on this machine, and 20% above it."""

    trial_id: str
    label: str
    measured_on: str = Field(description="the trial's machine")
    checked_on: str = Field(description="this machine's CPU")
    bound_ms: float
    planned_rps: float = Field(
        description="what was offered: the plan's rate_per_instance, the most one instance is planned to take"
    )
    rate_interval: tuple[float, float | None]
    basis: str
    over: float
    points: list[CheckPoint]
    outcome: Outcome
    summary: str
    notes: list[str] = Field(default_factory=list)


def check_point(name: str, point: LoadPoint) -> CheckPoint:
    return CheckPoint(
        name=name,
        rate=float(point.target_rate or 0.0),
        arrival=point.arrival or "constant",
        ok=point.ok,
        errors=point.errors,
        throughput_rps=point.throughput_rps,
        p99_ms=point.latency.p99_ms,
        p99_ci=point.p99_ci,
        early_stopping_p99_ms=point.p99_estimate_ms,
        verdict=point.slo.status if point.slo else "undecided",
        flags=point.flags,
    )


def study_config(raw: object, root: Path) -> StudyConfig:
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise PlanCheckError(
            f"{root}/study.yaml: not a study configuration ({exc.errors()[0]['msg']})"
        ) from exc


@contextmanager
def served(
    config: StudyConfig,
    trial: TrialRecord,
    workdir: Path,
    cache_dir: Path | None,
    on_message: Callable[[str], None],
) -> Iterator[StackServer]:
    """The trial's candidate served on loopback as the study served it; stopped on the way out."""
    files = TrialFiles(workdir / "server.log", workdir / "stack")
    files.stack_dir.mkdir(parents=True, exist_ok=True)
    launch = candidate_launch(config, trial.candidate, files, cache_dir, on_message)
    try:
        server = get_stack(trial.candidate.stack).start(launch)
    except ServerStartError as exc:
        raise PlanCheckError(f"{trial.trial_id} did not start: {exc}\n{exc.log_tail or ''}") from exc
    try:
        yield server
    finally:
        server.stop()


def warm_up(target: Target, candidate: Candidate, stop: threading.Event) -> int:
    """Warm the served candidate (see the rules); the requests answered, never measured."""
    knee = 2 * candidate.workers * candidate.max_batch_size
    held = LoadConfig(
        concurrency=knee, duration_s=WARM_S, warmup_s=0.0, warmup_requests=0, window_s=WARM_S,
        max_windows=1, min_window_requests=1,
    )  # fmt: skip
    answered = 0
    for cfg in [*batch_warmups(candidate), held]:
        try:
            answered += sum(p.ok for p in run_load(target, cfg, stop_event=stop).points)
        except LoadError as exc:
            raise PlanCheckError(f"the warm-up failed: {exc}") from exc
    return answered


def measure_rates(
    target: Target,
    config: StudyConfig,
    rates: list[tuple[str, float]],
    bound_ms: float,
    stop: threading.Event,
) -> list[CheckPoint]:
    """Each rate as the rate search measures one: its time stretched for a verdict, Poisson arrivals."""
    points = []
    for name, rate in rates:
        cfg = load_config(
            config.load, rate=rate, arrival=RATE_SEARCH_ARRIVAL, seed=CHECK_SEED, slo_p99_ms=bound_ms
        )
        try:
            report = run_points(target, verdict_config(cfg, rate), rates=[rate], stop_event=stop)
        except LoadError as exc:
            raise PlanCheckError(f"the load generator failed at {rate:.1f} req/s: {exc}") from exc
        points.append(check_point(name, report.points[0]))
    return points


def _stated_margins(plan: TrafficPlan) -> list[str]:
    """The plan's own margins below the rate its study found (recommend.capacity's rules)."""
    margins = []
    if plan.curve_utilisation < 1:
        margins.append(f"the p99 interval's margin (curve utilisation {plan.curve_utilisation:.0%})")
    if plan.arrival_utilisation < 1:
        margins.append(
            f"the margin for evenly spaced points (arrival utilisation {plan.arrival_utilisation:.0%})"
        )
    if plan.drift_utilisation < 1:
        margins.append(
            f"the margin for this machine's between-run drift (drift utilisation "
            f"{plan.drift_utilisation:.0%}, throughput SD {plan.drift_rel_sd or 0:.1%})"
        )
    if not plan.verified:
        margins.append(
            "the rate is a queueing model's prediction from closed-loop points, not a rate search's verdict"
        )
    return margins


def margin_reasons(plan: TrafficPlan, over: float) -> list[str]:
    """Why the point `over` above the planned rate met the bound: the study's bracket and the plan's
    stated margins put it below the study's lowest miss, or, above that miss, the machine was faster."""
    low, high = plan.rate_interval
    above = plan.rate_per_instance * (1 + over)
    if high is not None and above >= high:
        return [
            f"none in the plan's figures: the study's rate search missed the bound at {high:.1f} req/s, "
            f"below the +{over:.0%} point met here, so this machine answered faster now than during the "
            "study (other work on a shared host, or the noise of one run); rerun both on a quiet machine"
        ]
    bracket = "no measured rate above it missed" if high is None else f"the lowest miss was {high:.1f} req/s"
    return [
        f"the +{over:.0%} point ({above:.1f} req/s) stays under the study's limit: {low:.1f} req/s met "
        f"the bound, {bracket}",
        *_stated_margins(plan),
    ]


def judge(plan: TrafficPlan, points: list[CheckPoint], over: float) -> tuple[Outcome, str]:
    """The outcome (see the module's rules) and its sentence."""
    at, above = points
    head = f"at the planned {at.rate:.1f} req/s p99 {at.p99_ms:.1f} ms ({at.verdict})"
    tail = f"at +{over:.0%} ({above.rate:.1f} req/s) p99 {above.p99_ms:.1f} ms ({above.verdict})"
    if at.verdict == "missed":
        return "fails", f"the plan does not hold on this machine: {head}; {tail}"
    if at.verdict == "undecided" or above.verdict == "undecided":
        return "undecided", f"too few requests for a verdict: {head}; {tail}"
    if above.verdict == "missed":
        return "tight", f"the plan holds and is tight: {head}; {tail}"
    why = "; ".join(margin_reasons(plan, over))
    return "margin", f"the plan holds with more than {over:.0%} to spare: {head}; {tail}. Why: {why}"


def run_check(
    study_root: Path,
    raw_config: object,
    trial: TrialRecord,
    plan: TrafficPlan,
    bound_ms: float,
    *,
    workdir: Path,
    cache_dir: Path | None = None,
    over: float = OVER,
    on_message: Callable[[str], None] = lambda message: None,
) -> PlanCheck:
    """Serve the planned candidate here and measure the planned rate and `over` above it."""
    config = study_config(raw_config, study_root)
    rate = plan.rate_per_instance
    rates = [("planned", rate), (f"+{over:.0%}", rate * (1 + over))]
    with served(config, trial, workdir, cache_dir, on_message) as server:
        target = server.target(study_payloads(config), config.content_type)
        warmed = warm_up(target, trial.candidate, threading.Event())
        on_message(f"{plan.label}: warmed with {warmed} requests")
        on_message(f"{plan.label}: served; Poisson arrivals at {rate:.1f} and {rate * (1 + over):.1f} req/s")
        points = measure_rates(target, config, rates, bound_ms, threading.Event())
    outcome, summary = judge(plan, points, over)
    here = detect_cpu().model_name or "unknown CPU"
    there = trial.machine.cpu_model
    notes = [] if there in (None, here) else [f"measured on {there}, checked on {here}: another machine"]
    return PlanCheck(
        trial_id=trial.trial_id,
        label=plan.label,
        measured_on=trial.machine.label,
        checked_on=here,
        bound_ms=bound_ms,
        planned_rps=rate,
        rate_interval=plan.rate_interval,
        basis=plan.basis,
        over=over,
        points=points,
        outcome=outcome,
        summary=summary,
        notes=notes,
    )
