"""The load plan of one served candidate: a concurrency sweep to the peak, the concurrency-16 point,
and, when the constraints carry a p99 bound, the highest open-loop rate that meets it.

All measuring is the load generator's (deploybench.load); this module only decides which points.
With a p99 bound every point, closed loop too, carries its early-stopping verdict for that bound
(and is sized so one is reachable); the rate search starts from half the closed-loop peak, so its
points reach a verdict in seconds rather than the minute 459 requests take at 10 req/s.
Its arrivals are Poisson (seeded), not evenly spaced: independent users arrive in bursts, and a
burst queues behind a batch where evenly spaced sends never do, so at the same rate Poisson arrivals
have the higher p99. The rate the plan stands on must hold under the arrivals traffic brings (and
that MLPerf LoadGen's Server scenario issues), or the fleet is planned too thin.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from deploybench.config import LoadConfig
from deploybench.load import LiveStats, Target, sweep_concurrency, sweep_rate
from deploybench.load.sweeps import untrusted_summary
from deploybench.results import LoadPoint
from deploybench.study.spec import LoadPlan, StudyConfig

LiveCallback = Callable[[LiveStats], None]
RATE_SEARCH_ARRIVAL = "poisson"  # as real traffic and LoadGen's Server scenario: see the module's rules


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
        if self.peak_index is None:
            return "ok", f"no trusted point: no peak is claimed ({untrusted_summary(self.points)})"
        return "ok", None

    def rate_search_start(self) -> float | None:
        """Half the best closed-loop throughput measured (trusted peak first), if any."""
        best = self.points[self.peak_index] if self.peak_index is not None else None
        if best is None:
            valid = [p for p in self.points if p.invalid_reason is None and p.ok]
            best = max(valid, key=lambda p: p.throughput_rps, default=None)
        return 0.5 * best.throughput_rps if best is not None and best.throughput_rps > 0 else None


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


def measure_candidate(
    target: Target, config: StudyConfig, stop: threading.Event, on_live: LiveCallback
) -> MeasureResult:
    """Run the study's load plan against one served endpoint (the target its stack speaks)."""
    plan = config.load
    slo = config.constraints.p99_ms
    closed = sweep_concurrency(
        target,
        load_config(plan, sweep="concurrency", slo_p99_ms=slo),
        plan.concurrency_levels,
        extra_levels=plan.include_concurrency,
        max_concurrency=plan.max_concurrency,
        on_progress=on_live,
        stop_event=stop,
    )
    result = MeasureResult(list(closed.points), closed.peak_index, closed.index_of_concurrency(16))
    if slo is not None and plan.rate_search and not stop.is_set():
        rated = sweep_rate(
            target,
            load_config(
                plan,
                sweep="rate",
                slo_p99_ms=slo,
                arrival=RATE_SEARCH_ARRIVAL,
                rate_confirmations=plan.rate_confirmations,
            ),
            start_rate=result.rate_search_start(),
            on_progress=on_live,
            stop_event=stop,
        )
        offset = len(result.points)
        result.points.extend(rated.points)
        if rated.slo_rate_index is not None:
            result.slo_rate_index = offset + rated.slo_rate_index
    return result
