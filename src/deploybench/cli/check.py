"""`deploybench check-plan`: the traffic plan's per-instance rate measured for real on this machine."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from deploybench.cli.app import app, console, fail
from deploybench.cli.report import (
    REACTION_S,
    USER_ERRORS,
    Instance,
    JsonOut,
    MinInstances,
    PricePerHour,
    PricesFiles,
    ProvisionS,
    ReactionS,
    StudyDir,
    _constraints,
    traffic_inputs,
)
from deploybench.pricing.catalogue import price_override
from deploybench.recommend.capacity import TrafficPlan
from deploybench.recommend.records import Evaluation, Recommendation
from deploybench.report import StudyReadError, load_study, recommend_study, study_constraints
from deploybench.results import with_interval

if TYPE_CHECKING:  # imported lazily at run time with the study package (stacks, load)
    from deploybench.study.plan_check import PlanCheck

TrafficRequired = Annotated[
    str, typer.Option(help="your traffic, as `report --traffic` takes it: a rate, a CSV or a request log")
]
P99Required = Annotated[float, typer.Option("--p99-ms", min=0.0, help="the p99 bound the plan is for (ms)")]
Candidate = Annotated[
    str | None,
    typer.Option("--candidate", help="trial id whose plan to check (default: the recommended one)"),
]
Over = Annotated[
    float, typer.Option(min=0.01, max=2.0, help="the second point: this fraction above the plan")
]
Repeat = Annotated[
    int,
    typer.Option(
        "--repeat",
        min=1,
        max=10,
        help="runs of each rate, in turns (planned, +20%, planned, ...); the plan holds only when the "
        "planned rate meets the bound on every run",
    ),
]
CacheDir = Annotated[
    Path | None, typer.Option(help="artifact cache the study used (default: ~/.cache/deploybench)")
]


def _chosen(rec: Recommendation, trial_id: str | None) -> tuple[Evaluation, TrafficPlan]:
    """The evaluation whose plan is checked; ValueError when it has none, with why."""
    ev = (
        rec.winner if trial_id is None else next((e for e in rec.evaluations if e.trial_id == trial_id), None)
    )
    if ev is None:
        raise ValueError(
            f"no candidate {trial_id!r} in this study" if trial_id else rec.traffic_note or "no winner"
        )
    if ev.traffic_plan is None:
        raise ValueError(f"{ev.label}: no fleet plan ({rec.traffic_note or 'no rate per instance measured'})")
    return ev, ev.traffic_plan


def _print_plan(plan: TrafficPlan, planned: float, bound: float) -> None:
    high = plan.rate_interval[1]
    limit = f"limit < {high:.1f}" if high is not None else "no miss measured above"
    console.print(
        f"plan for [bold]{plan.label}[/]: {plan.rate_interval[0]:.1f} req/s found ({limit}); "
        f"[bold]{planned:.1f} req/s[/] the most one instance takes (curve {plan.curve_utilisation:.0%} x "
        f"arrivals {plan.arrival_utilisation:.0%} x drift {plan.drift_utilisation:.0%}); autoscaler target "
        f"{plan.target_rps_per_instance:.1f} "
        f"req/s; p99 bound {bound:g} ms",
        soft_wrap=True,
    )
    colour = "dim" if plan.verified else "yellow"
    console.print(f"[{colour}]basis: {plan.basis}[/]", soft_wrap=True)


def _print_check(check: PlanCheck) -> None:
    table = Table(title=f"Plan check on {check.checked_on}", header_style="bold")
    for name in (
        "point",
        "run",
        "offered req/s",
        "answered req/s",
        "p99 ms (95% CI)",
        "LoadGen ES p99 ms",
        "verdict",
    ):
        table.add_column(name, justify="left" if name in ("point", "verdict") else "right")
    for p in check.points:
        estimate = "—" if p.early_stopping_p99_ms is None else f"{p.early_stopping_p99_ms:.1f}"
        verdict = p.verdict + (f" ({sum(p.errors.values())} errors)" if p.errors else "")
        table.add_row(
            p.name,
            str(p.run),
            f"{p.rate:.1f}",
            f"{p.throughput_rps:.1f}",
            with_interval(p.p99_ms, p.p99_ci),
            estimate,
            verdict,
        )
    console.print(table)
    for p in check.points:
        for flag in [*p.flags, *([f"errors: {p.errors}"] if p.errors else [])]:
            console.print(f"[dim]{p.name} run {p.run}: {flag}[/]", soft_wrap=True)
    for runs in check.rates:
        console.print(
            f"{runs.name} ({runs.rate:.1f} req/s): met {runs.met}, missed {runs.missed}, undecided "
            f"{runs.undecided} of {runs.runs} runs; p99 {runs.p99_range()} ms",
            soft_wrap=True,
        )
    for note in check.notes:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    colour = {"tight": "green", "margin": "yellow", "fails": "red", "undecided": "yellow"}[check.outcome]
    console.print(f"[bold {colour}]{check.summary}[/]", soft_wrap=True)


@app.command("check-plan")
def check_plan(
    study_dir: StudyDir,
    traffic: TrafficRequired,
    p99_ms: P99Required,
    candidate: Candidate = None,
    min_instances: MinInstances = 1,
    provision_s: ProvisionS = 120.0,
    reaction_s: ReactionS = REACTION_S,
    instance: Instance = None,
    price_per_hour: PricePerHour = None,
    prices: PricesFiles = None,
    over: Over = 0.2,
    repeat: Repeat = 3,
    cache_dir: CacheDir = None,
    json_out: JsonOut = None,
) -> None:
    """Serve the plan's candidate here as its trial did, and measure p99 under Poisson arrivals at the
    most one instance is planned to take and 20% above, --repeat times each in turns; exit 1 when the
    plan does not hold (any run at the planned rate missed the bound)."""
    from deploybench.study.plan_check import PlanCheckError, run_check  # lazy: stacks, load

    try:
        profile, fleet = traffic_inputs(traffic, min_instances, provision_s, reaction_s)
        constraints = _constraints(study_constraints(load_study(study_dir)), p99_ms, None, None)
        study, rec = recommend_study(
            study_dir, constraints, price_override(instance, price_per_hour, prices), prices_files=prices,
            traffic=profile, fleet=fleet,
        )  # fmt: skip
        ev, plan = _chosen(rec, candidate)
        _print_plan(plan, plan.rate_per_instance, p99_ms)
        with tempfile.TemporaryDirectory(prefix="deploybench-check-") as workdir:
            check = run_check(
                study.root, study.config, study.trials[ev.trial_index], plan, p99_ms,
                workdir=Path(workdir), cache_dir=cache_dir, over=over, repeats=repeat,
                on_message=lambda message: console.print(f"[cyan]•[/] {message}", soft_wrap=True),
            )  # fmt: skip
    except (StudyReadError, PlanCheckError, *USER_ERRORS) as exc:
        raise fail(str(exc)) from exc
    _print_check(check)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "check": check.model_dump(mode="json"),
            "plan": plan.model_dump(mode="json", exclude={"simulation"}),
        }
        json_out.write_text(json.dumps(data, indent=2), encoding="utf-8")
    if check.outcome == "fails":
        raise typer.Exit(1)
