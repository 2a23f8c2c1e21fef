"""The load plan of one served candidate: a concurrency sweep to the peak, the concurrency-16 point,
and, when the constraints carry a p99 bound, the highest open-loop rate that meets it.

All measuring is the load generator's (deploybench.load); this module only decides which points.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from deploybench.config import LoadConfig
from deploybench.load import HttpTarget, run_load
from deploybench.results import LoadPoint
from deploybench.study.spec import LoadPlan, StudyConfig

LiveUpdate = Any  # the load generator's live statistics object, passed through to the CLI


@dataclass
class MeasureResult:
    points: list[LoadPoint] = field(default_factory=list)
    peak_index: int | None = None
    c16_index: int | None = None
    slo_rate_index: int | None = None

    def verdict(self, crashed: bool) -> tuple[Literal["ok", "failed"], str | None]:
        """A trial fails when its server crashed or never answered a request successfully."""
        if crashed:
            return "failed", "server process exited during the load test"
        if not self.points or all(point.ok == 0 for point in self.points):
            errors: dict[str, int] = {}
            for point in self.points:
                for kind, count in point.errors.items():
                    errors[kind] = errors.get(kind, 0) + count
            return "failed", f"no successful request (errors: {errors or 'none recorded'})"
        return "ok", None

    def add(self, points: list[LoadPoint]) -> list[int]:
        start = len(self.points)
        self.points.extend(points)
        return list(range(start, len(self.points)))


def load_config(plan: LoadPlan, **overrides: Any) -> LoadConfig:
    """The load generator's settings for one step of the plan."""
    base = {
        "window_s": plan.window_s,
        "min_window_requests": plan.min_window_requests,
        "max_windows": plan.max_windows,
        "warmup_s": plan.warmup_s,
        "duration_s": plan.point_max_s,
    }
    return LoadConfig(**{**base, **overrides})


def _best(points: list[LoadPoint], indices: list[int]) -> int | None:
    """Highest-throughput point among the trustworthy ones (stable, not client-bound), else among all."""
    trusted = [i for i in indices if points[i].stable and not points[i].client_bound and points[i].ok]
    pool = trusted or [i for i in indices if points[i].ok]
    return max(pool, key=lambda i: points[i].throughput_rps, default=None)


def _run_concurrency(
    result: MeasureResult,
    target: HttpTarget,
    plan: LoadPlan,
    stop: threading.Event,
    on_live: Callable[[LiveUpdate], None],
) -> list[int]:
    if plan.concurrency_levels:
        indices: list[int] = []
        for level in plan.concurrency_levels:
            if stop.is_set():
                break
            report = run_load(target, load_config(plan, concurrency=level), on_live, stop)
            indices += result.add(report.points)
        return indices
    cfg = load_config(plan, concurrency=1, sweep="concurrency")
    return result.add(run_load(target, cfg, on_live, stop).points)


def _ensure_levels(
    result: MeasureResult,
    target: HttpTarget,
    plan: LoadPlan,
    stop: threading.Event,
    on_live: Callable[[LiveUpdate], None],
) -> None:
    measured = {p.concurrency for p in result.points if p.mode == "closed"}
    for level in plan.include_concurrency:
        if level not in measured and not stop.is_set():
            result.add(run_load(target, load_config(plan, concurrency=level), on_live, stop).points)


def measure_candidate(
    url: str,
    payloads: list[bytes],
    config: StudyConfig,
    stop: threading.Event,
    on_live: Callable[[LiveUpdate], None],
) -> MeasureResult:
    """Run the study's load plan against one served endpoint."""
    plan = config.load
    target = HttpTarget(url, payloads, content_type=config.content_type)
    result = MeasureResult()
    closed = _run_concurrency(result, target, plan, stop, on_live)
    _ensure_levels(result, target, plan, stop, on_live)
    closed = [i for i, p in enumerate(result.points) if p.mode == "closed"]
    result.peak_index = _best(result.points, closed)
    result.c16_index = next((i for i in closed if result.points[i].concurrency == 16), None)
    slo = config.constraints.p99_ms
    if slo is not None and plan.rate_search and not stop.is_set():
        report = run_load(target, load_config(plan, rate=1.0, sweep="rate", slo_p99_ms=slo), on_live, stop)
        indices = result.add(report.points)
        if report.slo_rate_index is not None:
            result.slo_rate_index = indices[report.slo_rate_index]
    return result
