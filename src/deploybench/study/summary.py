"""Rows of the end-of-study table: plain data the CLI renders and --json writes."""

from __future__ import annotations

from typing import Any

from deploybench.results import Interval, LoadPoint, TrialRecord


def _ends(interval: Interval | None) -> list[float] | None:
    return None if interval is None else [interval.low, interval.high]


def _point_cells(point: LoadPoint | None) -> dict[str, Any]:
    if point is None:
        return {
            "rps": None,
            "rps_ci": None,
            "p50_ms": None,
            "p99_ms": None,
            "p99_ci": None,
            "p99_loadgen_ms": None,
        }
    return {
        "rps": point.throughput_rps,
        "rps_ci": _ends(point.throughput_ci),
        "p50_ms": point.latency.p50_ms,
        "p99_ms": point.latency.p99_ms,
        "p99_ci": _ends(point.p99_ci),
        "p99_loadgen_ms": point.p99_estimate_ms,
    }


def point_label(point: LoadPoint) -> str:
    return f"r={point.target_rate:g}/s" if point.target_rate is not None else f"c={point.concurrency}"


def flagged_points(trial: TrialRecord) -> list[dict[str, Any]]:
    """Every point not trusted, with its reasons (each carries its number)."""
    return [
        {"point": point_label(p), "flags": p.flags or ["unstable" if not p.stable else "client-bound"]}
        for p in trial.points
        if not p.trusted
    ]


def _mean_client(trial: TrialRecord, name: str) -> float | None:
    values = [
        getattr(p.client, name)
        for p in trial.points
        if p.client is not None and getattr(p.client, name) is not None
    ]
    return sum(values) / len(values) if values else None


def study_cpu_pct(trial: TrialRecord) -> float | None:
    """The study process's own CPU while this trial's points ran, % of the machine (their mean)."""
    return _mean_client(trial, "controller_cpu_pct")


def client_cpu_pct(trial: TrialRecord) -> float | None:
    """The load workers' CPU while this trial's points ran, % of the machine (their mean)."""
    return _mean_client(trial, "cpu_pct_of_machine")


def headline_point(trial: TrialRecord) -> LoadPoint | None:
    """The trusted peak, else the best closed-loop point measured (shown flagged as untrusted)."""
    if trial.peak is not None:
        return trial.peak
    closed = [p for p in trial.points if p.mode == "closed" and p.ok]
    return max(closed, key=lambda p: p.throughput_rps, default=None)


def trial_row(trial: TrialRecord) -> dict[str, Any]:
    """One candidate's headline numbers: peak, at concurrency 16, memory, status."""
    cand = trial.candidate
    peak, c16 = headline_point(trial), trial.at_c16
    return {
        "trial_id": trial.trial_id,
        "machine": trial.machine.instance or trial.machine.label,
        "backend": cand.backend,
        "stack": cand.stack,
        "protocol": trial.stack.protocol if trial.stack else None,
        "precision": trial.precision,
        "workers": cand.workers,
        "threads": cand.threads,
        "max_batch_size": cand.max_batch_size,
        "max_delay_ms": cand.max_delay_ms,
        "runtime": cand.runtime.key_suffix,
        "parity": trial.parity.verdict if trial.parity else None,
        "parity_label": trial.parity.label if trial.parity else None,
        "peak_concurrency": peak.concurrency if peak else None,
        "peak": _point_cells(peak),
        "c16": _point_cells(c16),
        "peak_trusted": trial.peak is not None,
        "peak_stable": peak.stable if peak else None,
        "peak_client_bound": peak.client_bound if peak else None,
        "points": len(trial.points),
        "flagged": flagged_points(trial),
        "study_cpu_pct": study_cpu_pct(trial),
        "client_cpu_pct": client_cpu_pct(trial),
        "peak_rss_mb": trial.peak_rss_mb,
        "server_cpu_pct": trial.server_cpu_pct,
        "front_cpu_pct": trial.front_cpu_pct,
        "status": trial.status,
        "reason": trial.reason,
        "weights": trial.weights,
    }


def sorted_rows(trials: list[TrialRecord]) -> list[dict[str, Any]]:
    """Measured candidates by peak throughput (highest first), then the unmeasured ones."""
    rows = [trial_row(t) for t in trials]
    return sorted(rows, key=lambda r: (r["peak"]["rps"] is None, -(r["peak"]["rps"] or 0.0), r["trial_id"]))
