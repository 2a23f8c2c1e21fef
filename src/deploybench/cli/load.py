"""`deploybench load`: drive an endpoint, show a live line, print the verdict table, write JSON/CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import ValidationError
from rich.live import Live
from rich.table import Table
from rich.text import Text

from deploybench.cli.app import app, console, fail
from deploybench.config import LoadConfig
from deploybench.inputs.payload import PayloadError, default_payload_path, read_payloads
from deploybench.load import (
    HttpTarget,
    LiveStats,
    LoadError,
    LoadReport,
    SageMakerTarget,
    Target,
    repeat_point,
    run_load,
)
from deploybench.load.load_report import write_csv
from deploybench.load.noise import MIN_REPEATS, record_path, record_repeats
from deploybench.results import LoadPoint, with_interval

OPTION_NAMES = {
    "concurrency": "--concurrency",
    "rate": "--rate",
    "arrival": "--arrival",
    "seed": "--seed",
    "duration_s": "--duration",
    "max_requests": "--max-requests",
    "warmup_requests": "--warmup-requests",
    "warmup_s": "--warmup",
    "window_s": "--window",
    "min_window_requests": "--min-window-requests",
    "max_windows": "--max-windows",
    "sweep": "--sweep",
    "slo_p99_ms": "--slo-p99-ms",
    "processes": "--processes",
    "request_timeout_s": "--timeout",
    "request_intervals_us": "--request-intervals",
}


def read_intervals(path: Path | None) -> list[int] | None:
    """perf_analyzer's --request-intervals file: one gap in microseconds per line (blank lines skipped)."""
    if path is None:
        return None
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        values = [int(float(line)) for line in lines if line and not line.startswith("#")]
    except (OSError, ValueError) as exc:
        raise fail(f"--request-intervals: {path}: {exc}") from exc
    if not values or min(values) <= 0:
        raise fail(f"--request-intervals: {path}: needs positive gaps in microseconds, one per line")
    return values


def _config(values: dict[str, object]) -> LoadConfig:
    """Validate with pydantic; an error names the command-line option, not the field."""
    try:
        return LoadConfig(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a rule across options (e.g. --rate against --request-intervals)
            raise fail(first["msg"]) from exc
        field = str(first["loc"][0])
        raise fail(f"{OPTION_NAMES.get(field, field)}: {first['msg']}") from exc


def _target(
    url: str | None,
    payload: Path | None,
    content_type: str,
    accept: str | None,
    sagemaker: str | None,
    endpoint_url: str | None,
    region: str | None,
) -> Target:
    try:
        bodies = read_payloads(payload or default_payload_path())
    except PayloadError as exc:
        raise fail(f"--payload: {exc}") from exc
    try:
        if sagemaker:
            return SageMakerTarget(
                sagemaker,
                bodies,
                content_type,
                endpoint_url=endpoint_url or url,
                region=region,
                accept=accept,
            )
        if not url:
            raise fail("URL: give the endpoint URL (or --sagemaker NAME)")
        return HttpTarget(url, bodies, content_type, accept)
    except LoadError as exc:
        raise fail(str(exc)) from exc


def _live_text(stats: LiveStats) -> Text:
    return Text.from_markup(
        f"[bold]{stats.label}[/] {stats.phase} {stats.elapsed_s:5.1f}s  "
        f"[cyan]{stats.rate_rps:8.1f} req/s[/]  p50 {stats.p50_ms:7.2f} ms  p99 {stats.p99_ms:7.2f} ms  "
        f"errors {stats.errors}  windows {stats.windows}"
    )


def _verdict(report: LoadReport, index: int) -> str:
    point = report.points[index]
    if point.invalid_reason:
        return "[red]invalid[/]"
    words = ["[green]stable[/]" if point.stable else "[yellow]unstable[/]"]
    if point.client_bound:
        words.append("[red]client-bound[/]")
    if point.slo is not None:
        colour = {"met": "green", "missed": "red"}.get(point.slo.status, "yellow")
        words.append(f"SLO [{colour}]{point.slo.status}[/]")
    if index == report.peak_index:
        words.append("[bold]peak[/]")
    if index == report.slo_rate_index:
        words.append("[bold]best rate in SLO[/]")
    return " ".join(words)


def _short(point: LoadPoint) -> str:
    return f"r={point.target_rate:g}/s" if point.target_rate is not None else f"c={point.concurrency}"


def _requests(point: LoadPoint) -> str:
    counts = point.accounting
    if counts is None:
        return str(point.ok + point.error_count)
    return f"{counts.issued}={counts.completed}+{counts.errors}+{counts.timed_out}"


def results_table(report: LoadReport) -> Table:
    """One row per point: figures with their 95% intervals, LoadGen's p99 estimate, the verdict."""
    table = Table(title=f"deploybench load: {report.target.get('url') or report.target.get('endpoint_name')}")
    columns = (
        "point",
        "req/s (95% CI)",
        "p50",
        "p99 ms (95% CI)",
        "p99 LoadGen",
        "max ms",
        "issued=ok+err+timeout",
        "verdict",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("point", "verdict") else "right")
    for index, point in enumerate(report.points):
        lat = point.latency
        estimate = "-" if point.p99_estimate_ms is None else f"{point.p99_estimate_ms:.2f}"
        table.add_row(
            _short(point),
            with_interval(point.throughput_rps, point.throughput_ci, ",.1f"),
            f"{lat.p50_ms:.2f}",
            with_interval(lat.p99_ms, point.p99_ci, ",.2f"),
            estimate,
            f"{lat.max_ms:.2f}",
            _requests(point),
            _verdict(report, index),
        )
    return table


def client_summary(point: LoadPoint) -> str:
    """'load client 6.1% of 2 cores (0.31 ms CPU per request), this process 0.4%' on every point."""
    client = point.client
    if client is None or client.cpu_pct_of_machine is None:
        cpu = f"{point.client_cpu_pct:.0f}%" if point.client_cpu_pct is not None else "n/a"
        return f"client CPU {cpu}"
    text = f"load client {client.cpu_pct_of_machine:.1f}% of {client.cores} cores"
    if client.cpu_ms_per_request is not None:
        text += f" ({client.cpu_ms_per_request:.2f} ms CPU per request)"
    if client.send_lateness is not None and client.send_lateness.count:
        text += f", send lateness p99 {client.send_lateness.p99_ms:.2f} ms"
    if client.send_gap is not None:
        text += f", reply-to-send {client.send_gap.mean_ms:.3f} ms mean"
    if client.controller_cpu_pct is not None:
        text += f"; this process {client.controller_cpu_pct:.1f}% of the machine"
    return text


def _slo_line(point: LoadPoint) -> str:
    slo = point.slo
    if slo is None:
        return ""
    return (
        f"; p{slo.percentile:g} <= {slo.bound_ms:g} ms: {slo.status} ({slo.overshoots}/{slo.requests} "
        f"over, {slo.required_requests} requests needed at {slo.confidence:.0%} confidence)"
    )


def _print_report(report: LoadReport) -> None:
    console.print(results_table(report))
    for point, detail in zip(report.points, report.details, strict=True):
        line = (
            f"  {_short(point)}: {detail.stop_reason}; merged {point.windows} of {len(detail.windows)} "
            f"complete window(s) + {detail.tail_requests} late replies; {client_summary(point)}"
        )
        console.print(line + _slo_line(point))
        for flag in point.flags:
            console.print(f"    [yellow]flag:[/] {flag}")
    interval = next((p.throughput_ci for p in report.points if p.throughput_ci), None)
    if interval is not None:
        console.print(
            f"[dim]intervals: {interval.method}; p99 LoadGen: MLPerf LoadGen's early-stopping "
            "estimate at 99% confidence ('-': fewer than 662 requests)[/]"
        )
    for note in report.notes:
        console.print(f"[dim]note:[/] {note}")
    if report.stopped_early:
        console.print("[yellow]stopped early: partial results[/]")


def _measure(target: Target, cfg: LoadConfig, repeat: int | None) -> LoadReport:
    """The run cfg asks for (or its one point `repeat` times), with the live line while it runs."""
    try:
        # drawn only when the generator reports (once a second): no refresh thread beside the load
        with Live(Text("starting..."), console=console, auto_refresh=False, transient=True) as live:

            def show(stats: LiveStats) -> None:
                live.update(_live_text(stats), refresh=True)

            if repeat is not None:
                return repeat_point(target, cfg, repeat, on_progress=show)
            return run_load(target, cfg, on_progress=show)
    except LoadError as exc:
        raise fail(str(exc)) from exc
    except KeyboardInterrupt as exc:
        raise fail("interrupted before any point was measured", code=130) from exc


def _pct(rel_sd: float | None) -> str:
    return "n/a" if rel_sd is None else f"{rel_sd:.1%}"


def _record_noise(report: LoadReport, repeat: int) -> None:
    """Merge the repeats' spread into this machine's between-run record and say what it now holds."""
    where = report.target.get("url") or report.target.get("endpoint_name")
    label = _short(report.points[0]) if report.points else "no point"
    try:
        record = record_repeats(report.points, by=f"deploybench load --repeat {repeat}: {label} on {where}")
    except (ValueError, OSError) as exc:
        console.print(f"[yellow]between-run noise not recorded:[/] {exc}")
        return
    latest, throughput, p99 = record.sources[-1], record.throughput, record.p99
    console.print(
        f"between-run spread of these {latest.repeats} points (SD of the log estimates): throughput "
        f"{_pct(latest.throughput_rel_sd)}, p99 {_pct(latest.p99_rel_sd)}"
    )
    console.print(
        f"this machine's record ({throughput.repeats if throughput else 0} repeats in all): throughput "
        f"{_pct(throughput.rel_sd if throughput else None)}, p99 {_pct(p99.rel_sd if p99 else None)}; "
        f"every later point interval on this machine adds it ({record_path(record.machine)})"
    )


@app.command()
def load(
    url: Annotated[str | None, typer.Argument(help="e.g. http://127.0.0.1:8080/invocations")] = None,
    payload: Annotated[Path | None, typer.Option(help="Body file, or a folder cycled in name order")] = None,
    content_type: Annotated[str, typer.Option(help="Content-Type of every request")] = "image/jpeg",
    accept: Annotated[str | None, typer.Option(help="Accept header")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Closed loop: requests in flight")] = None,
    rate: Annotated[float | None, typer.Option(help="Open loop: requests per second")] = None,
    arrival: Annotated[
        Literal["constant", "poisson", "intervals"], typer.Option(help="Open-loop arrivals")
    ] = "constant",
    seed: Annotated[int, typer.Option(help="Seed for Poisson arrivals")] = 0,
    request_intervals: Annotated[
        Path | None,
        typer.Option(help="Open loop replaying these gaps (microseconds, one per line; as perf_analyzer)"),
    ] = None,
    sweep: Annotated[Literal["none", "concurrency", "rate"], typer.Option(help="Find the peak")] = "none",
    slo_p99_ms: Annotated[float | None, typer.Option(help="p99 bound checked with early stopping")] = None,
    duration: Annotated[float, typer.Option(help="Max seconds per point, warm-up included")] = 30.0,
    max_requests: Annotated[int | None, typer.Option(help="Max requests per point")] = None,
    processes: Annotated[int, typer.Option(help="Spread the load over this many processes")] = 1,
    warmup: Annotated[float | None, typer.Option(help="Warm-up seconds (default 2)")] = None,
    warmup_requests: Annotated[int | None, typer.Option(help="Warm-up requests (default 20)")] = None,
    window: Annotated[float | None, typer.Option(help="Window seconds (default 5)")] = None,
    min_window_requests: Annotated[
        int | None, typer.Option(help="Requests per window (default 50; at least 4 / stability tolerance)")
    ] = None,
    max_windows: Annotated[int | None, typer.Option(help="Windows per point (default 10)")] = None,
    timeout: Annotated[float | None, typer.Option(help="Per-request timeout, seconds (default 30)")] = None,
    sagemaker: Annotated[str | None, typer.Option(help="SageMaker endpoint name (boto3 runtime)")] = None,
    endpoint_url: Annotated[str | None, typer.Option(help="SageMaker runtime endpoint URL")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region for --sagemaker")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the versioned JSON result")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write one CSV row per point")] = None,
    repeat: Annotated[
        int | None,
        typer.Option(
            min=MIN_REPEATS,
            help="Measure the point N times back to back and record their spread as this machine's "
            "between-run noise, which every later point interval adds",
        ),
    ] = None,
) -> None:
    """Load-test an endpoint: closed or open loop, windows until stable, HDR percentiles."""
    intervals = read_intervals(request_intervals)
    cfg = _config(
        {
            "concurrency": concurrency,
            "rate": rate,
            "seed": seed,
            "sweep": sweep,
            "arrival": "intervals" if intervals else arrival,
            "request_intervals_us": intervals,
            "slo_p99_ms": slo_p99_ms,
            "duration_s": duration,
            "max_requests": max_requests,
            "processes": processes,
            "warmup_s": warmup,
            "warmup_requests": warmup_requests,
            "window_s": window,
            "min_window_requests": min_window_requests,
            "max_windows": max_windows,
            "request_timeout_s": timeout,
        }
    )
    target = _target(url, payload, content_type, accept, sagemaker, endpoint_url, region)
    report = _measure(target, cfg, repeat)
    _print_report(report)
    if repeat is not None:
        _record_noise(report, repeat)
    if json_out:
        json_out.write_text(report.model_dump_json(indent=2), encoding="utf-8")
        console.print(f"wrote {json_out}")
    if csv_out:
        write_csv(report, csv_out)
        console.print(f"wrote {csv_out}")
