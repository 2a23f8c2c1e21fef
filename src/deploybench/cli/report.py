"""Commands: report (one study), compare (studies across machines), prices (catalogue), cost (one-off)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from deploybench.cli.app import app, console, fail
from deploybench.config import Constraints
from deploybench.pricing.catalogue import (
    PriceFileError,
    UnknownInstanceError,
    cost_per_million,
    load_catalogue,
    plan_capacity,
    price_override,
    transactions_per_hour,
)
from deploybench.recommend.records import Recommendation, ranked_rows, throughput_text
from deploybench.report import StudyReadError, load_study, study_constraints, write_report
from deploybench.report.compare import compare_studies
from deploybench.results import with_interval
from deploybench.traffic.fleet import FleetSettings
from deploybench.traffic.profile import TrafficProfile, read_traffic

StudyDir = Annotated[Path, typer.Argument(help="study folder (holds trials.jsonl)")]
Instance = Annotated[str | None, typer.Option(help="price every trial as this catalogue instance")]
PricePerHour = Annotated[float | None, typer.Option(min=0.0, help="USD per hour (wins over --instance)")]
PricesFiles = Annotated[
    list[Path] | None, typer.Option("--prices", help="your price CSV: adds/overrides catalogue entries")
]
P99 = Annotated[float | None, typer.Option("--p99-ms", min=0.0, help="p99 budget in ms")]
MinThroughput = Annotated[float | None, typer.Option(min=0.0, help="minimum req/s per instance")]
Objective = Annotated[
    str | None, typer.Option(help="cost | throughput | p99 (default: the study's, else cost)")
]
TargetRps = Annotated[float | None, typer.Option(min=0.0, help="peak traffic to plan capacity for (req/s)")]
Headroom = Annotated[float, typer.Option(min=0.0, max=0.95, help="fraction of each instance kept spare")]
JsonOut = Annotated[Path | None, typer.Option("--json", help="also write the result as JSON to this file")]
MaxAccuracyDrop = Annotated[
    float | None, typer.Option(min=0.0, help="top-1 percentage points a variant may lose vs eager")
]
RejectSignificantDrop = Annotated[
    bool | None,
    typer.Option("--reject-significant-drop", help="also exclude significant top-1 drops (McNemar p < 0.05)"),
]

Traffic = Annotated[
    str | None,
    typer.Option(
        help="your traffic: a rate in req/s, a CSV of (hour 0-23 or timestamp, req/s) or a request log "
        "(a timestamp per line); plans each candidate's fleet and ranks by its monthly bill"
    ),
]
MinInstances = Annotated[int, typer.Option(min=1, help="with --traffic: the smallest fleet kept")]
ProvisionS = Annotated[
    float,
    typer.Option(
        min=0.0, help="with --traffic: assumed seconds a new instance boots before its server starts"
    ),
]
ReactionS = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=3600.0,
        help="with --traffic: assumed seconds from a rise in traffic to the autoscaler's decision to "
        "scale out (SageMaker target tracking: 3 one-minute datapoints)",
    ),
]
REACTION_S = FleetSettings.model_fields["reaction_s"].default

USER_ERRORS = (PriceFileError, UnknownInstanceError, ValueError, OSError)


def traffic_inputs(
    spec: str | None, min_instances: int, provision_s: float, reaction_s: float = REACTION_S
) -> tuple[TrafficProfile | None, FleetSettings | None]:
    """--traffic read and checked (a TrafficError names the file, line and reason), with its fleet."""
    if spec is None:
        return None, None
    fleet = FleetSettings(min_instances=min_instances, provision_s=provision_s, reaction_s=reaction_s)
    return read_traffic(spec), fleet


def _constraints(
    base: Constraints,
    p99_ms: float | None,
    min_throughput: float | None,
    objective: str | None,
    **accuracy: float | bool | None,
):
    given = {"p99_ms": p99_ms, "min_throughput": min_throughput, "objective": objective, **accuracy}
    try:
        return Constraints.model_validate(
            {**base.model_dump(), **{k: v for k, v in given.items() if v is not None}}
        )
    except ValidationError as exc:
        problems = [f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors()]
        raise ValueError("; ".join(problems)) from exc


def print_recommendation(rec: Recommendation) -> None:
    """The ranking as a Rich table, then the headline (what users came for) last, where it is seen."""
    multi = len(rec.machines) > 1
    table = Table(title="Candidates ranked", header_style="bold", show_lines=False)
    for name, justify in [
        ("#", "right"),
        ("candidate", "left"),
        *([("machine", "left")] if multi else []),
        ("req/s (95% CI)", "right"),
        ("p99 ms (95% CI)", "right"),
        ("$ / 1M (95% CI)", "right"),
        ("vs baseline", "left"),
        ("why", "left"),
    ]:
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    shown, folded = ranked_rows(rec)
    for ev in shown:
        style = "bold green" if ev.rank == 1 else ("dim" if not ev.eligible else "")
        cells = [
            str(ev.rank or "—"),
            ev.label + (" ◆" if ev.pareto else ""),
            *([ev.machine] if multi else []),
            throughput_text(ev),
            with_interval(ev.p99_ms, ev.p99_ci),
            "—" if ev.cost_per_1m is None else "$" + with_interval(ev.cost_per_1m, ev.cost_per_1m_ci, ".2f"),
            ev.vs_baseline or "—",
            ev.reason,
        ]
        table.add_row(*cells, style=style)
    console.print(table)
    if folded:
        console.print(f"[dim]{folded}[/]", soft_wrap=True)
    if rec.runner_up:
        console.print(f"against its real runner-up: {rec.runner_up}", soft_wrap=True)
    if rec.comparison:
        console.print(f"against the next ranked: {rec.comparison}")
    for note in rec.notes:
        console.print(f"[yellow]note:[/] {note}")
    if rec.random_weights:
        console.print(
            "[bold yellow]weights: random[/] — timings and cost are valid; predictions and parity "
            "top-1 are not meaningful."
        )
    else:
        console.print(f"weights: {', '.join(rec.weights) or '—'}")
    colour = "green" if rec.winner else "red"
    console.print(f"[bold {colour}]{rec.headline}[/]")
    if rec.traffic_line:
        console.print(f"[bold]{rec.traffic_line}[/]", soft_wrap=True)


@app.command()
def report(
    study_dir: StudyDir,
    instance: Instance = None,
    price_per_hour: PricePerHour = None,
    prices: PricesFiles = None,
    p99_ms: P99 = None,
    min_throughput: MinThroughput = None,
    objective: Objective = None,
    target_rps: TargetRps = None,
    headroom: Headroom = 0.0,
    json_out: JsonOut = None,
    max_accuracy_drop: MaxAccuracyDrop = None,
    reject_significant_drop: RejectSignificantDrop = None,
    traffic: Traffic = None,
    min_instances: MinInstances = 1,
    provision_s: ProvisionS = 120.0,
    reaction_s: ReactionS = REACTION_S,
) -> None:
    """Rank a study's candidates and write report.html, summary.md and results.csv into its folder."""
    try:
        profile, fleet = traffic_inputs(traffic, min_instances, provision_s, reaction_s)
        base = study_constraints(load_study(study_dir))
        result = write_report(
            study_dir,
            _constraints(
                base,
                p99_ms,
                min_throughput,
                objective,
                max_accuracy_drop=max_accuracy_drop,
                reject_significant_drop=reject_significant_drop,
            ),
            price_override(instance, price_per_hour, prices),
            prices_files=prices,
            target_rps=target_rps,
            headroom=headroom,
            json_path=json_out,
            traffic=profile,
            fleet=fleet,
        )
    except (StudyReadError, *USER_ERRORS) as exc:
        raise fail(str(exc)) from exc
    print_recommendation(result.recommendation)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(f"report: [bold]{result.html_path}[/]")


@app.command()
def compare(
    study_dirs: Annotated[list[Path], typer.Argument(help="study folders, one per machine")],
    out: Annotated[Path, typer.Option(help="folder for the merged report")] = Path("studies/compare"),
    prices: PricesFiles = None,
    p99_ms: P99 = None,
    min_throughput: MinThroughput = None,
    objective: Objective = None,
    target_rps: TargetRps = None,
    headroom: Headroom = 0.0,
    json_out: JsonOut = None,
) -> None:
    """Merge studies taken on different machines into one ranked comparison and report."""
    try:
        base = study_constraints(load_study(study_dirs[0]))
        result = compare_studies(
            study_dirs,
            out,
            _constraints(base, p99_ms, min_throughput, objective),
            prices_files=prices,
            target_rps=target_rps,
            headroom=headroom,
            json_path=json_out,
        )
    except (StudyReadError, *USER_ERRORS) as exc:
        raise fail(str(exc)) from exc
    print_recommendation(result.recommendation)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(f"report: [bold]{result.html_path}[/]")


def _write_json(path: Path | None, data: Any) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")


@app.command()
def prices(
    filter_text: Annotated[str | None, typer.Option("--filter", help="text in provider/instance/...")] = None,
    prices_files: PricesFiles = None,
    json_out: JsonOut = None,
) -> None:
    """List the price catalogue (bundled prices, overridden by --prices files)."""
    try:
        catalogue = load_catalogue(prices_files)
    except USER_ERRORS as exc:
        raise fail(str(exc)) from exc
    rows = catalogue.search(filter_text)
    table = Table(
        title=f"On-demand prices ({', '.join(catalogue.versions) or 'catalogue'})", header_style="bold"
    )
    for name in (
        "provider",
        "service",
        "instance",
        "region",
        "$ / hour",
        "vCPUs",
        "GiB",
        "accelerator",
        "CPU",
        "date",
    ):
        numeric = name in ("$ / hour", "vCPUs", "GiB")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=name != "accelerator")
    for e in rows:
        table.add_row(
            e.provider,
            e.service,
            e.instance,
            e.region,
            f"{e.usd_per_hour:.4f}",
            str(e.vcpus or "—"),
            f"{e.memory_gib:g}" if e.memory_gib else "—",
            e.accelerator or "—",
            f"{e.cpu_vendor} {e.cpu_family}" if e.cpu_family else "—",
            str(e.date or "—"),
        )
    console.print(table)
    console.print(f"{len(rows)} of {len(catalogue.entries)} entries; sources: {', '.join(catalogue.files)}")
    _write_json(
        json_out,
        {
            "versions": catalogue.versions,
            "files": catalogue.files,
            "entries": [e.model_dump(mode="json") for e in rows],
        },
    )


@app.command()
def cost(
    throughput: Annotated[float, typer.Option(min=0.0, help="sustained req/s of one instance")],
    price_per_hour: PricePerHour = None,
    instance: Annotated[str | None, typer.Option(help="catalogue instance to price with")] = None,
    prices_files: PricesFiles = None,
    target_rps: TargetRps = None,
    headroom: Headroom = 0.0,
    json_out: JsonOut = None,
) -> None:
    """One-off: cost per 1M inferences and transactions per hour (and capacity for --target-rps)."""
    if price_per_hour is None and instance is None:
        raise fail("give --price-per-hour X or --instance NAME")
    try:
        price = price_override(instance, price_per_hour, prices_files)
        assert price is not None
        per_million = cost_per_million(price.usd_per_hour, throughput)
        plan = plan_capacity(target_rps, throughput, price.usd_per_hour, headroom) if target_rps else None
    except USER_ERRORS as exc:
        raise fail(str(exc)) from exc
    label = f" ({price.instance})" if price.instance else ""
    console.print(f"{throughput:g} req/s at ${price.usd_per_hour:g}/h{label}:")
    console.print(f"  cost per 1M inferences: [bold]${per_million:.2f}[/] (${per_million:.4f})")
    console.print(f"  transactions per hour:  {transactions_per_hour(throughput):,.0f}")
    if plan is not None:
        console.print(
            f"  for {plan.target_rps:g} req/s peak: {plan.instances} instance(s), "
            f"${plan.monthly_usd:,.2f} per month ({plan.hours_per_month} h)"
        )
    _write_json(
        json_out,
        {
            "throughput_rps": throughput,
            "usd_per_hour": price.usd_per_hour,
            "instance": price.instance,
            "cost_per_1m": per_million,
            "transactions_per_hour": transactions_per_hour(throughput),
            "capacity": plan.model_dump(mode="json") if plan else None,
        },
    )
