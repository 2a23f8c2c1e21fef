"""Tabular views of a recommendation (pandas for results.csv) and of the study's context.

One place builds the rows so that report.html, summary.md, results.csv and --json agree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from deploybench.recommend.records import Evaluation, Recommendation, throughput_text
from deploybench.recommend.ties import geometric_mean
from deploybench.report.traffic import capacity_entries
from deploybench.results import DEFAULT_STACK, Interval, TrialRecord, with_interval

COST_FORMULA = "cost per 1M inferences = USD per hour / (throughput per second x 3600) x 1e6"
TX_FORMULA = "transactions per hour = throughput per second x 3600"


def _ends(interval: Interval | None) -> tuple[float | None, float | None]:
    return (None, None) if interval is None else (interval.low, interval.high)


def evaluation_row(ev: Evaluation) -> dict[str, Any]:
    """One flat row per trial: the columns of results.csv and of the ranking table.

    Every figure of the operating point comes with its 95% interval (`*_low`, `*_high`, and the
    `*_text` cells the tables show); `interval_method` says how the intervals were obtained.
    """
    plan = ev.capacity
    (thr_low, thr_high), (p99_low, p99_high) = _ends(ev.throughput_ci), _ends(ev.p99_ci)
    cost_low, cost_high = _ends(ev.cost_per_1m_ci)
    return {
        "rank": ev.rank,
        "candidate": ev.label,
        "machine": ev.machine,
        "model": ev.model,
        "weights": ev.weights,
        "backend": ev.backend,
        "stack": ev.stack,
        "protocol": ev.protocol,
        "precision": ev.precision,
        "device": ev.device,
        "workers": ev.workers,
        "threads": ev.threads,
        "max_batch_size": ev.max_batch_size,
        "max_delay_ms": ev.max_delay_ms,
        "status": ev.status,
        "eligible": ev.eligible,
        "pareto": ev.pareto,
        "concurrency": ev.concurrency,
        "target_rate": ev.target_rate,
        "throughput_rps": ev.throughput_rps,
        "throughput_low": thr_low,
        "throughput_high": thr_high,
        "throughput_text": throughput_text(ev),
        "search_rps": ev.search_rps,
        "search_round": ev.search_round,
        "p50_ms": ev.p50_ms,
        "p99_ms": ev.p99_ms,
        "p99_low": p99_low,
        "p99_high": p99_high,
        "p99_text": with_interval(ev.p99_ms, ev.p99_ci),
        "usd_per_hour": ev.usd_per_hour,
        "price_source": ev.price_source,
        "cost_per_1m_usd": ev.cost_per_1m,
        "cost_per_1m_low": cost_low,
        "cost_per_1m_high": cost_high,
        "cost_text": with_interval(ev.cost_per_1m, ev.cost_per_1m_ci, ".2f"),
        "interval_method": ev.throughput_ci.method if ev.throughput_ci else None,
        "cost_vs_winner": ev.cost_vs_winner,
        "transactions_per_hour": ev.transactions_per_hour,
        "peak_throughput_rps": ev.peak_throughput_rps,
        "peak_p99_ms": ev.peak_p99_ms,
        "runoff_rps": geometric_mean(ev.runoff.rps) if ev.runoff else None,  # side by side, round 2
        "vs_baseline": ev.vs_baseline,
        "throughput_x": ev.throughput_x,
        "throughput_x_low": ev.throughput_x_ci.low if ev.throughput_x_ci else None,  # paired runoff
        "throughput_x_high": ev.throughput_x_ci.high if ev.throughput_x_ci else None,
        "p99_change_pct": ev.p99_change_pct,
        "cost_change_pct": ev.cost_change_pct,
        "peak_rss_mb": ev.peak_rss_mb,
        "server_cpu_pct": ev.server_cpu_pct,
        "accuracy_drop_pp": ev.accuracy_drop_pp,
        "instances_needed": plan.instances if plan else None,
        "monthly_usd": plan.monthly_usd if plan else None,
        "reason": ev.reason,
        "trial_id": ev.trial_id,
    }


def _machine_row(ev: Evaluation, kind: str) -> dict[str, Any]:
    return {
        "machine": ev.machine,
        "kind": kind,
        "candidate": ev.label,
        "throughput_rps": ev.throughput_rps,
        "p99_ms": ev.p99_ms,
        "cost_per_1m_usd": ev.cost_per_1m,
        "transactions_per_hour": ev.transactions_per_hour,
        "throughput_x": ev.throughput_x,
        "cost_vs_winner": ev.cost_vs_winner,
        "rank": ev.rank,
    }


def machine_rows(rec: Recommendation) -> list[dict[str, Any]]:
    """The comparison the project grew from: per machine, the eager baseline and the best candidate
    (throughput, p99, $ per 1M, transactions per hour, x eager on that machine, x the best's cost),
    machines in order of their best candidate's rank."""
    rows: list[dict[str, Any]] = []
    best = {}
    for ev in rec.evaluations:  # ranked first, so the first eligible one per machine is its best
        if ev.eligible and ev.machine not in best:
            best[ev.machine] = ev
    for machine in sorted(rec.machines, key=lambda m: (m not in best, best[m].rank if m in best else 0, m)):
        baseline = next((e for e in rec.evaluations if e.machine == machine and e.is_default_eager), None)
        if baseline is not None and baseline.throughput_rps is not None:
            rows.append(_machine_row(baseline, "eager (not compiled)"))
        if machine in best and best[machine] is not baseline:
            rows.append(_machine_row(best[machine], "best"))
    return rows


def results_frame(rec: Recommendation) -> pd.DataFrame:
    return pd.DataFrame([evaluation_row(ev) for ev in rec.evaluations])


def recommendation_json(rec: Recommendation) -> dict[str, Any]:
    """The recommendation as JSON, with the derived fields (headline, vs_baseline) spelled out."""
    data = rec.model_dump(mode="json")
    for ev_data in [*data["evaluations"], *([data["winner"]] if data["winner"] else [])]:
        ev_data.pop("traffic_plan", None)  # once, in `capacity`, not again under every evaluation
    data["headline"] = rec.headline
    data["traffic_line"] = rec.traffic_line
    data["capacity"] = capacity_entries(rec) if rec.traffic is not None else None
    data["random_weights"] = rec.random_weights
    data["cost_formula"] = COST_FORMULA
    for ev_data, ev in zip(data["evaluations"], rec.evaluations, strict=True):
        ev_data["vs_baseline"] = ev.vs_baseline
    if data["winner"] is not None and rec.winner is not None:
        data["winner"]["vs_baseline"] = rec.winner.vs_baseline
    return data


def parity_rows(trials: Sequence[TrialRecord]) -> list[dict[str, Any]]:
    """One row per variant (backend, precision, machine): the parity gate's evidence."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for trial in trials:
        parity = trial.parity
        key = (
            trial.candidate.backend,
            trial.precision or "fp32",
            trial.machine.instance or trial.machine.label,
        )
        if parity is None or key in rows:
            continue
        rows[key] = {
            "backend": key[0],
            "precision": parity.precision or key[1],
            "machine": key[2],
            "verdict": parity.verdict,
            "label": parity.label,
            "inputs": parity.inputs,
            "top1_agreement": parity.top1_agreement,
            "top5_overlap": parity.top5_overlap,
            "cosine_min": parity.cosine_min,
            "max_abs_err": parity.max_abs_err,
            "reason": parity.reason or "; ".join(parity.notes) or "",
        }
    return sorted(rows.values(), key=lambda r: (r["verdict"] != "reference", r["backend"], r["precision"]))


def accuracy_rows(trials: Sequence[TrialRecord], rec: Recommendation) -> list[dict[str, Any]]:
    """One row per variant scored on labelled data, and whether the recommendation excluded it for it."""
    excluded = {
        (ev.backend, ev.precision): ev.reason for ev in rec.evaluations if ev.reason.startswith("accuracy:")
    }
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for trial in trials:
        key = (trial.candidate.backend, trial.precision or "fp32")
        acc = trial.accuracy
        if acc is None or key in rows:
            continue
        rows[key] = {
            "backend": key[0],
            "precision": key[1],
            "n": acc.n,
            "top1": acc.top1,
            "top5": acc.top5,
            "drop_pp": acc.drop_pp,
            "interval": None if acc.drop_pp is None else f"[{acc.drop_low_pp:+.1f}, {acc.drop_high_pp:+.1f}]",
            "p_value": acc.p_value,
            "verdict": "reference"
            if acc.drop_pp is None
            else ("significant" if acc.significant else "not significant"),
            "excluded": excluded.get(key, "").removeprefix("accuracy: "),
            "data": acc.data,
        }
    return sorted(rows.values(), key=lambda r: (r["drop_pp"] is not None, r["backend"], r["precision"]))


def flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as dotted keys; lists of scalars joined; for the environment table."""
    if isinstance(data, dict):
        rows: list[tuple[str, str]] = []
        for key, value in data.items():
            rows.extend(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    if isinstance(data, list) and all(not isinstance(v, dict | list) for v in data):
        return [(prefix, ", ".join(str(v) for v in data))]
    if isinstance(data, list):
        return [(prefix, json.dumps(data))]
    return [(prefix, "" if data is None else str(data))]


def variant_rows(variants: Sequence[Any]) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of variants.json (scalar fields only), whatever its exact schema."""
    dicts = [v for v in variants if isinstance(v, dict)]
    columns = list(dict.fromkeys(k for v in dicts for k, x in v.items() if not isinstance(x, dict | list)))
    return columns, [[_cell(v.get(c)) for c in columns] for v in dicts]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def fmt(value: float | None, spec: str = ".1f", prefix: str = "", suffix: str = "") -> str:
    """Format a number for humans; '—' when missing."""
    return "—" if value is None else f"{prefix}{value:{spec}}{suffix}"


def stack_comparison(rec: Recommendation) -> list[dict[str, Any]]:
    """Per backend served by more than one stack, side by side (peak, p99, memory): each other stack's
    fully measured trials (its default knobs, and the finalists of its searched grid), deploybench's
    server at each one's very same knobs, and deploybench's best of its searched grid.

    Ordered by the best peak throughput, so the first group is the best backend the stacks share.
    """
    served = [e for e in rec.evaluations if e.status == "ok" and (e.peak_throughput_rps or e.throughput_rps)]
    by_label = {(ev.machine, ev.label): ev for ev in served}
    groups = []
    for machine, backend in dict.fromkeys((ev.machine, ev.backend) for ev in served):
        mine = [ev for ev in served if (ev.machine, ev.backend) == (machine, backend)]
        rows = _stack_rows(mine, by_label)
        if rows:
            ordered = sorted(rows.values(), key=lambda r: -(r["peak_rps"] or 0.0))
            groups.append({"backend": backend, "machine": machine, "rows": ordered})
    return sorted(groups, key=lambda g: -(g["rows"][0]["peak_rps"] or 0.0))


def _stack_rows(
    mine: list[Evaluation], by_label: dict[tuple[str, str], Evaluation]
) -> dict[str, dict[str, Any]]:
    """One machine's trials of one backend: every other stack's, each one's deploybench twin, and
    deploybench's best (none when no other stack served the backend there)."""
    others = [ev for ev in mine if ev.stack != DEFAULT_STACK]
    rows: dict[str, dict[str, Any]] = {}
    if not others:
        return rows
    defaults = _default_knobs(others)
    for other in others:
        basis = "its default knobs" if other.label in defaults else "a finalist of its searched grid"
        rows.setdefault(other.label, _stack_row(other, basis))
        twin = by_label.get((other.machine, other.label.removesuffix(f" via {other.stack}")))
        if twin is not None:
            rows.setdefault(twin.label, _stack_row(twin, f"the knobs {other.stack} was given"))
    own = [ev for ev in mine if ev.stack == DEFAULT_STACK]
    if own:
        best = max(own, key=_headline_rps)
        rows.setdefault(best.label, _stack_row(best, "the best of its searched grid"))
    return rows


def _default_knobs(others: list[Evaluation]) -> set[str]:
    """The labels of each stack's trial at its default knobs: one worker, batch 1, and of those the
    most threads (the plan gives that worker every core; the search protects it: study/protect.py)."""
    best: dict[str, Evaluation] = {}
    for ev in others:
        if (
            ev.workers == 1
            and ev.max_batch_size == 1
            and ev.threads > getattr(best.get(ev.stack), "threads", 0)
        ):
            best[ev.stack] = ev
    return {ev.label for ev in best.values()}


def _headline_rps(ev: Evaluation) -> float:
    return ev.peak_throughput_rps or ev.throughput_rps or 0.0


def _stack_row(ev: Evaluation, basis: str) -> dict[str, Any]:
    trusted = ev.peak_throughput_rps is not None
    return {
        "stack": ev.stack,
        "basis": basis,
        "protocol": ev.protocol or "",
        "candidate": ev.label,
        "peak_rps": ev.peak_throughput_rps if trusted else ev.throughput_rps,
        "peak_p99_ms": ev.peak_p99_ms if trusted else ev.p99_ms,
        "peak_trusted": trusted,
        "rank": ev.rank,
        "cost_per_1m_usd": ev.cost_per_1m,
        "peak_rss_mb": ev.peak_rss_mb,
        "server_cpu_pct": ev.server_cpu_pct,
    }
