"""`deploybench run`: the whole study, from model to measured, ranked deployment candidates."""

from __future__ import annotations

import hashlib
import json
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from deploybench.cli.app import app, console, fail
from deploybench.cli.study_progress import RichStudyProgress
from deploybench.study.runner import StudyOutcome, run_study
from deploybench.study.spec import (
    StudyConfig,
    StudyFileError,
    dump_study_config,
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
    machine = {k: options[k] for k in ("instance", "price_per_hour") if options.get(k) is not None}
    if machine:
        overrides["machine"] = machine
    names = ("p99_ms", "min_throughput", "objective", "max_accuracy_drop", "reject_significant_drop")
    constraints = {k: options[k] for k in names if options.get(k) is not None}
    if constraints:
        overrides["constraints"] = constraints
    for key in ("payload", "eval_data"):
        if options.get(key) is not None:
            overrides[key] = str(options[key])
    return overrides


def default_study_dir(config: StudyConfig) -> Path:
    """studies/<name>-<hash of the resolved config>: the same command finds (and resumes) the same folder."""
    digest = hashlib.sha256(dump_study_config(config).encode()).hexdigest()[:8]
    return Path("studies") / f"{config.name}-{digest}"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


_COLUMNS = (
    ("backend", "left"),
    ("stack", "left"),
    ("precision", "left"),
    ("w/t/b/d", "left"),
    ("parity", "left"),
    ("peak req/s", "right"),
    ("p50 ms", "right"),
    ("p99 ms", "right"),
    ("c16 req/s", "right"),
    ("c16 p99 ms", "right"),
    ("mem MB", "right"),
    ("status", "left"),
)


def render_table(outcome: StudyOutcome) -> Table:
    """All candidates by peak throughput; w/t/b/d = workers / threads / max batch / max delay ms."""
    table = Table(title=f"Study results ({outcome.weights} weights)")
    for name, justify in _COLUMNS:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in sorted_rows(outcome.trials):
        knobs = f"{row['workers']}/{row['threads']}/{row['max_batch_size']}/{row['max_delay_ms']:g}"
        peak_flag = "" if row["peak_trusted"] or row["peak"]["rps"] is None else " ~"
        table.add_row(
            row["backend"],
            row["stack"],
            row["precision"] or "-",
            knobs,
            row["parity_label"] or "-",
            _fmt(row["peak"]["rps"]) + peak_flag,
            _fmt(row["peak"]["p50_ms"]),
            _fmt(row["peak"]["p99_ms"]),
            _fmt(row["c16"]["rps"]),
            _fmt(row["c16"]["p99_ms"]),
            _fmt(row["peak_rss_mb"], 0),
            row["status"],
        )
    return table


def print_reasons(outcome: StudyOutcome) -> None:
    """Why each candidate that was not measured cleanly is so: one line each, under the table."""
    rows = [row for row in sorted_rows(outcome.trials) if row["reason"] and row["status"] != "ok"]
    if any(not row["peak_trusted"] and row["peak"]["rps"] for row in sorted_rows(outcome.trials)):
        console.print("  ~ best point measured, no trusted peak: unstable or client-bound (see the report)")
    for row in rows:
        console.print(f"  [dim]{row['trial_id']}[/]: {row['status']}: {row['reason']}")


def _install_sigint(stop: threading.Event) -> None:
    """First Ctrl-C: stop cleanly after the current measurement; second: the default (abort)."""

    def handler(signum: int, frame: object) -> None:
        console.print("[yellow]stopping: Ctrl-C again to abort; rerun the same command to resume[/]")
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)


def _write_report(outcome: StudyOutcome, config: StudyConfig, json_out: Path | None) -> None:
    """The recommendation and report, exactly as `deploybench report STUDY_DIR` prints and writes them."""
    from deploybench.cli.report import print_recommendation  # plotly is heavy: import at the end only
    from deploybench.report import write_report
    from deploybench.report.tables import recommendation_json

    result = write_report(outcome.root, config.constraints)
    print_recommendation(result.recommendation)
    console.print(f"report: [bold]{result.html_path}[/]", soft_wrap=True)
    if json_out is not None:
        payload = {
            "study_dir": str(outcome.root),
            "rows": sorted_rows(outcome.trials),
            "recommendation": recommendation_json(result.recommendation),
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
        typer.Option(help="stacks: deploybench,torchserve,triton,litserve (any of them) or all"),
    ] = None,
    payload: Annotated[Path | None, typer.Option(help="request body file or folder")] = None,
    instance: Annotated[str | None, typer.Option(help="instance name from the price catalogue")] = None,
    price_per_hour: Annotated[float | None, typer.Option(help="USD per hour of this machine")] = None,
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
        Path | None, typer.Option(help="study folder (default: studies/<name>-<config hash>)")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="artifact cache (default: ~/.cache/deploybench)")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results table as JSON")] = None,
) -> None:
    """Build, verify, serve and load-test every candidate; record, rank and report them."""
    options = {
        "source": model,
        "weights": weights,
        "backends": backends,
        "stacks": stacks,
        "instance": instance,
        "price_per_hour": price_per_hour,
        "p99_ms": p99_ms,
        "min_throughput": min_throughput,
        "objective": objective,
        "payload": payload,
        "eval_data": eval_data,
        "calibration_data": str(calibration_data) if calibration_data else None,
        "max_accuracy_drop": max_accuracy_drop,
        "reject_significant_drop": reject_significant_drop,
    }
    try:
        overrides = _cli_overrides(options)
        config = load_study_config(study_file, {**(quick_overrides() if quick else {}), **overrides})
    except StudyFileError as exc:
        raise fail(f"invalid study:\n{exc}") from exc
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
    console.print(
        f"study folder: [bold]{outcome.root}[/]"
        + (f" ({outcome.resumed} trials resumed from an earlier run)" if outcome.resumed else ""),
        soft_wrap=True,
    )
    _write_report(outcome, config, json_out)
