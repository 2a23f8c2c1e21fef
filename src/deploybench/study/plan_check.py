"""Check a traffic plan for real: serve its candidate on this machine exactly as its trial did, offer
one instance the most the plan gives it, and 20% more, each several times, and compare each measured
p99 with the bound.

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
- Each rate is measured `repeats` times (check-plan --repeat, 3 by default), in turns: planned, +20%,
  planned, +20%, ... A loaded 2-vCPU host moves one run's p99 near the bound by up to 2x between
  runs, so one run per rate proves little; taking turns lets the machine's slow drift fall on both
  rates alike. Run k's Poisson schedule is seeded CHECK_SEED + SEED_STRIDE x (k - 1), the same for
  both rates: every run a fresh sample of arrivals, as every hour of traffic is, and run 1 the same
  schedule as a single-run check.
- The outcome comes from the early-stopping verdicts of every run, never a raw p99 (judge):
  fails (any run at the planned rate missed the bound: a fleet must hold it in every hour, so the
  plan must on every run), undecided (no planned run missed, but one had too few requests for a
  verdict, or no run 20% above was decided), tight (every planned run met the bound and at least
  one run 20% above missed it) or margin (every planned run met it and so did every decided run 20%
  above: the plan keeps more than 20%, and says why from its own figures). The spread over runs is
  kept per rate (RateRuns: verdicts counted, p99 lowest and highest).
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
REPEATS = 3  # runs of each rate (see the rules)
PLANNED = "planned"  # the name of the planned rate's runs; the other rate is named "+20%" (by `over`)
CHECK_SEED = 26  # the Poisson arrivals' seed of run 1: the same check, the same schedules
SEED_STRIDE = 1000  # between runs' seeds: the load generator's workers take seed + 0, 1, 2, ...
WARM_S = 5.0  # the closed-loop warm-up at the knee before the first point (see the rules)
Outcome = Literal["tight", "margin", "fails", "undecided"]


class PlanCheckError(ValueError):
    """The check could not run (no plan, no config, the server did not start); the message says why."""


class CheckPoint(StrictModel):
    """One open-loop point of the check: the rate offered, what came back, the verdict on the bound."""

    name: str = Field(description="planned, or +20%: which rate of the check")
    run: int = Field(ge=1, description="which run of this rate (1-based; runs of both rates take turns)")
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


class RateRuns(StrictModel):
    """One rate of the check over all its runs: the verdicts counted and the spread of p99."""

    name: str = Field(description="planned, or +20%: which rate of the check")
    rate: float = Field(description="arrival rate offered to the one instance (req/s)")
    runs: int
    met: int
    missed: int
    undecided: int
    p99_min_ms: float = Field(description="the lowest measured p99 over the runs")
    p99_max_ms: float = Field(description="the highest measured p99 over the runs")

    def p99_range(self) -> str:
        """'41.2-67.0', or '41.2' when the runs agree to 0.1 ms (one run)."""
        low, high = f"{self.p99_min_ms:.1f}", f"{self.p99_max_ms:.1f}"
        return low if low == high else f"{low}-{high}"


class PlanCheck(StrictModel):
    """The plan's per-instance rate measured on this machine, and 20% above it, `repeats` times each."""

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
    repeats: int = Field(description="runs of each rate, taken in turns")
    points: list[CheckPoint] = Field(description="every run, in the order measured")
    rates: list[RateRuns] = Field(description="each rate over its runs: the verdicts and the p99 spread")
    outcome: Outcome
    summary: str
    notes: list[str] = Field(default_factory=list)


def check_point(name: str, run: int, point: LoadPoint) -> CheckPoint:
    return CheckPoint(
        name=name,
        run=run,
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


def interleaved(
    rates: list[tuple[str, float]], repeats: int, first_run: int = 1
) -> list[tuple[int, str, float]]:
    """(run, name, rate) in the order measured: every rate once per run, runs one after another."""
    return [(run, name, rate) for run in range(first_run, first_run + repeats) for name, rate in rates]


def measure_rates(
    target: Target,
    config: StudyConfig,
    rates: list[tuple[str, float]],
    bound_ms: float,
    stop: threading.Event,
    *,
    repeats: int,
    first_run: int = 1,
    on_point: Callable[[CheckPoint], None] = lambda point: None,
) -> list[CheckPoint]:
    """Each rate as the rate search measures one (its time stretched for a verdict, Poisson arrivals),
    `repeats` times, the rates taking turns; run k seeded as the module's rules say."""
    points = []
    for run, name, rate in interleaved(rates, repeats, first_run):
        seed = CHECK_SEED + SEED_STRIDE * (run - 1)
        cfg = load_config(config.load, rate=rate, arrival=RATE_SEARCH_ARRIVAL, seed=seed, slo_p99_ms=bound_ms)
        try:
            report = run_points(target, verdict_config(cfg, rate), rates=[rate], stop_event=stop)
        except LoadError as exc:
            raise PlanCheckError(f"the load generator failed at {rate:.1f} req/s: {exc}") from exc
        points.append(check_point(name, run, report.points[0]))
        on_point(points[-1])
    return points


def rate_runs(points: list[CheckPoint]) -> list[RateRuns]:
    """Each rate's runs together, in the order the rates were first measured."""
    names = list(dict.fromkeys(point.name for point in points))
    return [_runs_of([point for point in points if point.name == name]) for name in names]


def _runs_of(runs: list[CheckPoint]) -> RateRuns:
    verdicts = [point.verdict for point in runs]
    p99s = [point.p99_ms for point in runs]
    return RateRuns(
        name=runs[0].name,
        rate=runs[0].rate,
        runs=len(runs),
        met=verdicts.count("met"),
        missed=verdicts.count("missed"),
        undecided=verdicts.count("undecided"),
        p99_min_ms=min(p99s),
        p99_max_ms=max(p99s),
    )


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
            "study (other work on a shared host, or the noise between runs); rerun both on a quiet machine"
        ]
    bracket = "no measured rate above it missed" if high is None else f"the lowest miss was {high:.1f} req/s"
    return [
        f"the +{over:.0%} point ({above:.1f} req/s) stays under the study's limit: {low:.1f} req/s met "
        f"the bound, {bracket}",
        *_stated_margins(plan),
    ]


def _runs_said(runs: RateRuns, where: str) -> str:
    """E.g. 'at the planned 58.5 req/s: met in 2 of 3 runs (1 undecided), p99 41.2-67.0 ms'."""
    undecided = f" ({runs.undecided} undecided)" if runs.undecided else ""
    return f"{where}: met in {runs.met} of {runs.runs} runs{undecided}, p99 {runs.p99_range()} ms"


def judge(plan: TrafficPlan, points: list[CheckPoint], over: float) -> tuple[Outcome, str]:
    """The outcome from the verdicts of every run of both rates, and its sentence. The rule, and why:
    - fails: any run at the planned rate missed the bound. A fleet must hold the bound in every hour,
      so the plan must on every run; a met run beside a miss is luck, not capacity.
    - undecided: no planned run missed, but one had too few requests for a verdict (it vouches for
      nothing), or no run 20% above was decided (nothing says how much the plan keeps).
    - tight: every planned run met the bound and at least one run 20% above missed it: 20% more
      does not hold on every run, so the plan keeps less than 20%.
    - margin: every planned run met it and so did every decided run 20% above (margin_reasons: why).
    Verdicts, never raw p99s: one run's p99 near the bound moves by up to 2x on a loaded host.
    """
    by_name = {runs.name: runs for runs in rate_runs(points)}
    at = by_name.pop(PLANNED)
    (above,) = by_name.values()
    said = (
        f"{_runs_said(at, f'at the planned {at.rate:.1f} req/s')}; "
        f"{_runs_said(above, f'at +{over:.0%} ({above.rate:.1f} req/s)')}"
    )
    if at.missed:
        return "fails", f"the plan does not hold on this machine (it must on every run): {said}"
    if at.undecided or above.undecided == above.runs:
        return "undecided", f"too few requests for a verdict: {said}"
    if above.missed:
        return "tight", f"the plan holds and is tight: {said}"
    why = "; ".join(margin_reasons(plan, over))
    return "margin", f"the plan holds with more than {over:.0%} to spare: {said}. Why: {why}"


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
    repeats: int = REPEATS,
    on_message: Callable[[str], None] = lambda message: None,
) -> PlanCheck:
    """Serve the planned candidate here and measure the planned rate and `over` above it, `repeats`
    times each, in turns."""
    config = study_config(raw_config, study_root)
    rate = plan.rate_per_instance
    rates = [(PLANNED, rate), (f"+{over:.0%}", rate * (1 + over))]
    with served(config, trial, workdir, cache_dir, on_message) as server:
        target = server.target(study_payloads(config), config.content_type)
        warmed = warm_up(target, trial.candidate, threading.Event())
        on_message(f"{plan.label}: warmed with {warmed} requests")
        on_message(
            f"{plan.label}: served; Poisson arrivals at {rate:.1f} and {rate * (1 + over):.1f} req/s, "
            f"{repeats} run(s) each, in turns"
        )
        points = measure_rates(
            target, config, rates, bound_ms, threading.Event(), repeats=repeats,
            on_point=lambda point: on_message(
                f"{point.name} run {point.run}: p99 {point.p99_ms:.1f} ms, {point.verdict}"
            ),
        )  # fmt: skip
    return _recorded(trial, plan, bound_ms, over, repeats, points)


def _recorded(
    trial: TrialRecord,
    plan: TrafficPlan,
    bound_ms: float,
    over: float,
    repeats: int,
    points: list[CheckPoint],
) -> PlanCheck:
    """The check's record: every run, each rate's spread, the outcome judged from them."""
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
        planned_rps=plan.rate_per_instance,
        rate_interval=plan.rate_interval,
        basis=plan.basis,
        over=over,
        repeats=repeats,
        points=points,
        rates=rate_runs(points),
        outcome=outcome,
        summary=summary,
        notes=notes,
    )
