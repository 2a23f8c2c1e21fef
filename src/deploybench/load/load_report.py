"""The load generator's result file (versioned JSON) and the live progress record."""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from pydantic import Field

from deploybench.config import LoadConfig, StrictModel
from deploybench.results import Interval, LoadPoint

LOAD_SCHEMA_VERSION = 1


class WindowSummary(StrictModel):
    """One measurement window, kept so a reader can see why a point was (un)stable."""

    duration_s: float
    ok: int
    errors: int
    throughput_rps: float
    p50_ms: float = 0.0
    p99_ms: float


class PointDetail(StrictModel):
    """How one point was measured: its windows, warm-up and why it ended."""

    label: str
    windows: list[WindowSummary] = Field(default_factory=list)
    merged_windows: int = 0
    warmup_s: float = 0.0
    warmup_requests: int = 0
    stop_reason: str = ""
    client_bound_reasons: list[str] = Field(default_factory=list)
    processes: int = 1
    tail_requests: int = Field(0, description="replies (or timeouts) that came after measuring stopped")


class ClientEnvironment(StrictModel):
    """Facts about the machine that generated the load."""

    hostname: str
    platform: str
    python: str
    cpu_model: str | None = None
    logical_cpus: int | None = None
    load_average: list[float] | None = None
    versions: dict[str, str] = Field(default_factory=dict)


class LoadReport(StrictModel):
    """Everything one `deploybench load` run measured; points are LoadPoints (results.py)."""

    schema_version: int = LOAD_SCHEMA_VERSION
    settings: LoadConfig
    target: dict[str, Any]
    environment: ClientEnvironment
    points: list[LoadPoint] = Field(default_factory=list)
    details: list[PointDetail] = Field(default_factory=list)
    peak_index: int | None = None
    slo_rate_index: int | None = None
    stopped_early: bool = False
    notes: list[str] = Field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""

    @property
    def peak(self) -> LoadPoint | None:
        return self.points[self.peak_index] if self.peak_index is not None else None

    def best_index(self, require_stable: bool = True, allow_client_bound: bool = False) -> int | None:
        """Highest-throughput valid point under looser rules than peak_index (which is (True, False))."""
        eligible = [
            i
            for i, p in enumerate(self.points)
            if p.invalid_reason is None
            and (p.stable or not require_stable)
            and (allow_client_bound or not p.client_bound)
        ]
        return max(eligible, key=lambda i: self.points[i].throughput_rps) if eligible else None

    def index_of_concurrency(self, concurrency: int) -> int | None:
        """Index of the closed-loop point at this concurrency (the study wants c=16)."""
        for index, point in enumerate(self.points):
            if point.mode != "open" and point.concurrency == concurrency:
                return index
        return None


@dataclass
class LiveStats:
    """What the live line shows, refreshed every tick while a point runs."""

    label: str
    phase: str  # "warm-up" | "measuring"
    elapsed_s: float
    rate_rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    windows: int


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return platform.processor() or None


def client_environment() -> ClientEnvironment:
    """Host facts recorded with every result, so numbers from two machines can be told apart."""
    versions = {}
    for package in ("deploybench", "aiohttp", "uvloop", "hdrhistogram", "boto3"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    try:
        load = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        load = None
    return ClientEnvironment(
        hostname=socket.gethostname(),
        platform=platform.platform(),
        python=platform.python_version(),
        cpu_model=_cpu_model(),
        logical_cpus=os.cpu_count(),
        load_average=load,
        versions=versions,
    )


CSV_COLUMNS = (
    "label",
    "mode",
    "concurrency",
    "target_rate",
    "throughput_rps",
    "throughput_low",
    "throughput_high",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "p99_low",
    "p99_high",
    "p99_loadgen_estimate_ms",
    "p999_ms",
    "mean_ms",
    "max_ms",
    "ok",
    "errors",
    "error_classes",
    "issued",
    "completed",
    "failed",
    "timed_out",
    "tail_ok",
    "stable",
    "windows",
    "duration_s",
    "trusted",
    "flags",
    "client_bound",
    "client_cpu_pct",
    "client_cpu_pct_of_machine",
    "client_cpu_ms_per_request",
    "send_lateness_p99_ms",
    "send_gap_mean_ms",
    "controller_cpu_pct",
    "late_send_fraction",
    "bytes_sent",
    "bytes_received",
    "slo_status",
    "slo_met",
    "interval_method",
)


def _bounds(interval: Interval | None) -> tuple[float | None, float | None]:
    return (None, None) if interval is None else (round(interval.low, 4), round(interval.high, 4))


def _client_cells(point: LoadPoint) -> dict[str, Any]:
    client = point.client
    if client is None:
        return {}
    return {
        "client_cpu_pct_of_machine": client.cpu_pct_of_machine,
        "client_cpu_ms_per_request": client.cpu_ms_per_request,
        "send_lateness_p99_ms": client.send_lateness.p99_ms if client.send_lateness else None,
        "send_gap_mean_ms": round(client.send_gap.mean_ms, 4) if client.send_gap else None,
        "controller_cpu_pct": client.controller_cpu_pct,
    }


def point_row(label: str, point: LoadPoint) -> dict[str, Any]:
    """One flat row for a point, in CSV_COLUMNS order (pandas and spreadsheets read it)."""
    lat, counts = point.latency, point.accounting
    (thr_low, thr_high), (p99_low, p99_high) = _bounds(point.throughput_ci), _bounds(point.p99_ci)
    row = dict.fromkeys(CSV_COLUMNS)
    row.update(
        {
            "label": label,
            "mode": point.mode,
            "concurrency": point.concurrency,
            "target_rate": point.target_rate,
            "throughput_rps": round(point.throughput_rps, 3),
            "throughput_low": thr_low,
            "throughput_high": thr_high,
            "p50_ms": lat.p50_ms,
            "p90_ms": lat.p90_ms,
            "p95_ms": lat.p95_ms,
            "p99_ms": lat.p99_ms,
            "p99_low": p99_low,
            "p99_high": p99_high,
            "p99_loadgen_estimate_ms": point.p99_estimate_ms,
            "p999_ms": lat.p999_ms,
            "mean_ms": round(lat.mean_ms, 4),
            "max_ms": lat.max_ms,
            "ok": point.ok,
            "errors": point.error_count,
            "error_classes": ";".join(f"{k}={v}" for k, v in sorted(point.errors.items())),
            "issued": counts.issued if counts else None,
            "completed": counts.completed if counts else None,
            "failed": counts.errors if counts else None,
            "timed_out": counts.timed_out if counts else None,
            "tail_ok": point.tail_ok,
            "stable": point.stable,
            "windows": point.windows,
            "duration_s": point.duration_s,
            "trusted": point.trusted,
            "flags": " | ".join(point.flags),
            "client_bound": point.client_bound,
            "client_cpu_pct": point.client_cpu_pct,
            "late_send_fraction": point.late_send_fraction,
            "bytes_sent": point.bytes_sent,
            "bytes_received": point.bytes_received,
            "slo_status": point.slo.status if point.slo else None,
            "slo_met": point.slo.met if point.slo else None,
            "interval_method": point.throughput_ci.method if point.throughput_ci else None,
            **_client_cells(point),
        }
    )
    return row


def report_rows(report: LoadReport) -> list[dict[str, Any]]:
    """One flat row per point, in CSV_COLUMNS order."""
    pairs = zip(report.points, report.details, strict=True)
    return [point_row(detail.label, point) for point, detail in pairs]


def write_csv(report: LoadReport, path: str | os.PathLike[str]) -> None:
    """Write report_rows as CSV."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        writer.writerows(report_rows(report))
