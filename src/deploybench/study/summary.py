"""Rows of the end-of-study table: plain data the CLI renders and --json writes."""

from __future__ import annotations

from typing import Any

from deploybench.results import LoadPoint, TrialRecord


def _point_cells(point: LoadPoint | None) -> dict[str, float | None]:
    if point is None:
        return {"rps": None, "p50_ms": None, "p99_ms": None}
    return {"rps": point.throughput_rps, "p50_ms": point.latency.p50_ms, "p99_ms": point.latency.p99_ms}


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
        "backend": cand.backend,
        "stack": cand.stack,
        "protocol": trial.stack.protocol if trial.stack else None,
        "precision": trial.precision,
        "workers": cand.workers,
        "threads": cand.threads,
        "max_batch_size": cand.max_batch_size,
        "max_delay_ms": cand.max_delay_ms,
        "parity": trial.parity.verdict if trial.parity else None,
        "parity_label": trial.parity.label if trial.parity else None,
        "peak_concurrency": peak.concurrency if peak else None,
        "peak": _point_cells(peak),
        "c16": _point_cells(c16),
        "peak_trusted": trial.peak is not None,
        "peak_stable": peak.stable if peak else None,
        "peak_client_bound": peak.client_bound if peak else None,
        "peak_rss_mb": trial.peak_rss_mb,
        "server_cpu_pct": trial.server_cpu_pct,
        "status": trial.status,
        "reason": trial.reason,
        "weights": trial.weights,
    }


def sorted_rows(trials: list[TrialRecord]) -> list[dict[str, Any]]:
    """Measured candidates by peak throughput (highest first), then the unmeasured ones."""
    rows = [trial_row(t) for t in trials]
    return sorted(rows, key=lambda r: (r["peak"]["rps"] is None, -(r["peak"]["rps"] or 0.0), r["trial_id"]))
