"""`deploybench run`: the whole study, from model to measured, ranked deployment candidates."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from deploybench.cli.app import app, console, fail
from deploybench.cli.plan import machine_shape, show_plan
from deploybench.cli.report import (
    REACTION_S,
    MinInstances,
    ProvisionS,
    ReactionS,
    Traffic,
    print_recommendation,
    traffic_inputs,
)
from deploybench.cli.serve import parse_shape
from deploybench.cli.study_progress import RichStudyProgress
from deploybench.report import write_report
from deploybench.results import Interval, with_interval
from deploybench.study.budget import parse_budget
from deploybench.study.folder import key_digest, study_key
from deploybench.study.runner import StudyOutcome, run_study
from deploybench.study.spec import (
    StudyConfig,
    StudyFileError,
    load_study_config,
    quick_overrides,
)
from deploybench.study.store import StudyStoreError
from deploybench.study.summary import sorted_rows


def _cli_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """Only the flags the user gave, nested like the study file, so they overlay it."""
    overrides: dict[str, Any] = {}
    model = {k: options[k] for k in ("source", "weights", "calibration_data") if options.get(k) is not None}
    if model:
        overrides["model"] = model
    for key in ("backends", "stacks"):
        if options.get(key):
            overrides[key] = [name.strip() for name in options[key].split(",") if name.strip()]
    given_machine = ("instance", "price_per_hour", "unpriced")
    machine = {k: options[k] for k in given_machine if options.get(k) is not None}
    if machine:
        overrides["machine"] = machine
    names = ("p99_ms", "min_throughput", "objective", "max_accuracy_drop", "reject_significant_drop")
    constraints = {k: options[k] for k in names if options.get(k) is not None}
    if constraints:
        overrides["constraints"] = constraints
    overrides.update(_top_level_overrides(options))
    if options.get("budget_s") is not None:
        overrides["search"] = {"budget_s": options["budget_s"]}
    if options.get("input_shape") is not None:
        overrides.setdefault("model", {})["input_shape"] = parse_shape(options["input_shape"])
    return overrides


def _top_level_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The flags that set one top-level field of the study file each."""
    overrides: dict[str, Any] = {}
    for key in ("payload", "eval_data"):
        if options.get(key) is not None:
            overrides[key] = str(options[key])
    if options.get("cluster") is not None:
        overrides["cluster"] = {"address": options["cluster"]}
    if options.get("content_type") is not None:
        overrides["content_type"] = options["content_type"]
    return overrides


def _budget_seconds(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_budget(text)
    except ValueError as exc:
        raise fail(f"--budget: {exc}") from exc


def default_study_dir(config: StudyConfig) -> Path:
    """studies/<name>-<key>: the same command on the same inputs finds (and resumes) the same folder;
    the key covers the resolved config, the contents of the files it names and the library versions, so
    retrained weights or another payload start a new study."""
    return Path("studies") / f"{config.name}-{key_digest(study_key(config))}"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _with_ci(value: float | None, ends: list[float] | None) -> str:
    interval = None if ends is None else Interval(low=ends[0], high=ends[1], method="")
    return with_interval(value, interval, missing="-")


_COLUMNS = (
    ("backend", "left"),
    ("stack", "left"),
    ("precision", "left"),
    ("w/t/b/d", "left"),
    ("parity", "left"),
    ("peak req/s (95% CI)", "right"),
    ("p50 ms", "right"),
    ("p99 ms (95% CI)", "right"),
    ("p99 LoadGen", "right"),
    ("c16 req/s", "right"),
    ("c16 p99 ms", "right"),
    ("mem MB", "right"),
    ("status", "left"),
)


def render_table(outcome: StudyOutcome) -> Table:
    """All candidates by peak throughput; w/t/b/d = workers / threads / max batch / max delay ms, then
    the runtime knobs that differ from the defaults (Candidate.key's suffix, e.g. s2-ovl)."""
    table = Table(title=f"Study results ({outcome.weights} weights)")
    rows = sorted_rows(outcome.trials)
    machines = len({row["machine"] for row in rows}) > 1  # a cluster study: say where each ran
    for name, justify in (("machine", "left"),) * machines + _COLUMNS:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        knobs = f"{row['workers']}/{row['threads']}/{row['max_batch_size']}/{row['max_delay_ms']:g}"
        knobs += f" {row['runtime']}" if row["runtime"] else ""
        peak_flag = "" if row["peak_trusted"] or row["peak"]["rps"] is None else " ~"
        table.add_row(
            *[row["machine"]] * machines,
            row["backend"],
            row["stack"],
            row["precision"] or "-",
            knobs,
            row["parity_label"] or "-",
            _with_ci(row["peak"]["rps"], row["peak"]["rps_ci"]) + peak_flag,
            _fmt(row["peak"]["p50_ms"]),
            _with_ci(row["peak"]["p99_ms"], row["peak"]["p99_ci"]),
            _fmt(row["peak"]["p99_loadgen_ms"]),
            _fmt(row["c16"]["rps"]),
            _fmt(row["c16"]["p99_ms"]),
            _fmt(row["peak_rss_mb"], 0),
            row["status"],
        )
    return table


def print_reasons(outcome: StudyOutcome) -> None:
    """Why each candidate or point that was not measured cleanly is so: one line each, under the table."""
    all_rows = sorted_rows(outcome.trials)
    rows = [row for row in all_rows if row["reason"] and row["status"] != "ok"]
    if any(not row["peak_trusted"] and row["peak"]["rps"] for row in all_rows):
        console.print("  ~ best point measured, no trusted peak (see the flags below)")
    for row in rows:
        console.print(f"  [dim]{row['trial_id']}[/]: {row['status']}: {row['reason']}")
    points = sum(row["points"] for row in all_rows)
    flagged = [(row["trial_id"], item) for row in all_rows for item in row["flagged"]]
    if points:
        console.print(f"  {len(flagged)} of {points} load points flagged" + ":" * bool(flagged))
    for trial_id, item in flagged:
        console.print(f"    [dim]{trial_id}[/] {item['point']}: {'; '.join(item['flags'])}")
    _print_share(all_rows, "client_cpu_pct", "the load client used")
    _print_share(all_rows, "study_cpu_pct", "the study process itself used")


def _print_share(rows: list[dict[str, Any]], key: str, who: str) -> None:
    shares = [row[key] for row in rows if row[key] is not None]
    if shares:
        console.print(
            f"  {who} {sum(shares) / len(shares):.2f}% of the machine's {os.cpu_count()} cores "
            f"while points ran (worst trial {max(shares):.2f}%)"
        )


def _install_sigint(stop: threading.Event) -> None:
    """First Ctrl-C: stop cleanly after the current measurement; second: the default (abort)."""

    def handler(signum: int, frame: object) -> None:
        console.print("[yellow]stopping: Ctrl-C again to abort; rerun the same command to resume[/]")
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)


def _write_report(
    outcome: StudyOutcome, config: StudyConfig, json_out: Path | None, traffic: tuple[Any, Any] = (None, None)
) -> None:
    """The recommendation and report, exactly as `deploybench report STUDY_DIR` prints and writes them."""
    # lazy: pandas loads when the study is done, not at start-up
    from deploybench.report.tables import recommendation_json

    result = write_report(outcome.root, config.constraints, traffic=traffic[0], fleet=traffic[1])
    print_recommendation(result.recommendation)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    console.print(f"report: [bold]{result.html_path}[/]", soft_wrap=True)
    if json_out is not None:
        payload = {
            "study_dir": str(outcome.root),
            "rows": sorted_rows(outcome.trials),
            "recommendation": recommendation_json(result.recommendation),
            "warnings": result.warnings,
            "report": str(result.html_path),
        }
        json_out.write_text(json.dumps(payload, indent=2, default=str))


@app.command()
def run(
    study_file: Annotated[Path | None, typer.Argument(help="study YAML; omitted: the default study")] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="model source, e.g. torchvision:resnet50")
    ] = None,
    weights: Annotated[str | None, typer.Option(help="auto | pretrained | random | FILE")] = None,
    backends: Annotated[str | None, typer.Option(help="comma-separated backends (default: all here)")] = None,
    stacks: Annotated[
        str | None,
        typer.Option(help="stacks: deploybench,torchserve,pytriton,litserve (any of them) or all"),
    ] = None,
    payload: Annotated[Path | None, typer.Option(help="request body file or folder")] = None,
    content_type: Annotated[
        str | None, typer.Option(help="Content-Type of the payload bodies (default image/jpeg)")
    ] = None,
    input_shape: Annotated[
        str | None, typer.Option(help="C,H,W model input (SageMaker archives: read from input_fn)")
    ] = None,
    instance: Annotated[str | None, typer.Option(help="instance name from the price catalogue")] = None,
    price_per_hour: Annotated[float | None, typer.Option(help="USD per hour of this machine")] = None,
    unpriced: Annotated[
        bool, typer.Option("--unpriced", help="no catalogue entry matches this CPU: rank without a cost")
    ] = False,
    p99_ms: Annotated[float | None, typer.Option(help="constraint: p99 latency bound (ms)")] = None,
    min_throughput: Annotated[float | None, typer.Option(help="constraint: minimum req/s")] = None,
    objective: Annotated[str | None, typer.Option(help="cost | throughput | p99")] = None,
    eval_data: Annotated[
        str | None, typer.Option(help="labelled images (ImageFolder or CSV) scored per variant; 'bundled'")
    ] = None,
    calibration_data: Annotated[
        Path | None, typer.Option(help="folder of images for int8 calibration")
    ] = None,
    max_accuracy_drop: Annotated[
        float | None, typer.Option(help="constraint: top-1 percentage points a variant may lose vs eager")
    ] = None,
    reject_significant_drop: Annotated[
        bool | None,
        typer.Option(
            "--reject-significant-drop", help="constraint: exclude significant top-1 drops (McNemar)"
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="about 2 minutes: fewer candidates, shorter windows")
    ] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="start over instead of resuming")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="study folder (default: studies/<name>-<key of the config, input files and libraries>)"
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="artifact cache (default: ~/.cache/deploybench)")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results table as JSON")] = None,
    cluster: Annotated[
        str | None,
        typer.Option(help="run on a Ray cluster: auto | HOST:PORT | ray://HOST:10001 (see the README)"),
    ] = None,
    traffic: Traffic = None,
    min_instances: MinInstances = 1,
    provision_s: ProvisionS = 120.0,
    reaction_s: ReactionS = REACTION_S,
    budget: Annotated[
        str | None,
        typer.Option(help="the search's time budget, e.g. 10m, 1h30m (default: sized to the machine)"),
    ] = None,
    plan_only: Annotated[
        bool,
        typer.Option("--plan-only", help="print the candidate space and the time plan; measure nothing"),
    ] = False,
    machine: Annotated[
        str | None, typer.Option(help="--plan-only for a catalogue instance (its vCPUs and GPU)")
    ] = None,
    cores: Annotated[int | None, typer.Option(min=1, help="--plan-only for a machine of N vCPUs")] = None,
    gpu: Annotated[str | None, typer.Option(help="--plan-only with this GPU model, e.g. L4")] = None,
) -> None:
    """Build, verify, serve and load-test every candidate; record, rank and report them."""
    options = {
        "source": model,
        "weights": weights,
        "backends": backends,
        "stacks": stacks,
        "instance": instance,
        "price_per_hour": price_per_hour,
        "unpriced": unpriced or None,  # a flag left off is not an override
        "p99_ms": p99_ms,
        "min_throughput": min_throughput,
        "objective": objective,
        "payload": payload,
        "cluster": cluster,
        "eval_data": eval_data,
        "calibration_data": str(calibration_data) if calibration_data else None,
        "max_accuracy_drop": max_accuracy_drop,
        "reject_significant_drop": reject_significant_drop,
        "content_type": content_type,
        "input_shape": input_shape,
        "budget_s": _budget_seconds(budget),
    }
    try:
        planned = traffic_inputs(
            traffic, min_instances, provision_s, reaction_s
        )  # refused before hours of measuring
    except ValueError as exc:
        raise fail(str(exc)) from exc
    try:
        overrides = _cli_overrides(options)
        config = load_study_config(study_file, {**(quick_overrides() if quick else {}), **overrides})
    except StudyFileError as exc:
        raise fail(f"invalid study:\n{exc}") from exc
    if plan_only:
        return show_plan(config, machine_shape(machine, cores, gpu), None, json_out)
    if machine or cores or gpu:
        raise fail("--machine, --cores and --gpu describe a machine to plan for: use them with --plan-only")
    root = out or default_study_dir(config)
    stop = threading.Event()
    _install_sigint(stop)
    try:
        with RichStudyProgress(console) as progress:
            outcome = run_study(config, root, fresh=fresh, cache_dir=cache_dir, progress=progress, stop=stop)
    except KeyboardInterrupt as exc:
        raise fail(
            f"interrupted; finished trials are kept in {root}. Rerun the same command to resume.", 130
        ) from exc
    except (StudyStoreError, ValueError) as exc:
        raise fail(str(exc)) from exc
    console.print(render_table(outcome))
    print_reasons(outcome)
    for line in outcome.unfinished:
        console.print(f"  [yellow]{line}[/]", soft_wrap=True)
    if outcome.unfinished:
        console.print("[yellow]rerun the same command to run what did not finish[/]")
    console.print(
        f"study folder: [bold]{outcome.root}[/]"
        + (f" ({outcome.resumed} trials resumed from an earlier run)" if outcome.resumed else ""),
        soft_wrap=True,
    )
    if outcome.resumed and not outcome.measured and not outcome.unfinished:
        console.print(
            "[yellow]nothing was measured this time: this answer is the earlier run's, read back from "
            "its folder; add --fresh (make run RUN_ARGS=--fresh) to measure again[/]",
            soft_wrap=True,
        )
    _write_report(outcome, config, json_out, planned)
