"""Server metrics in the Prometheus text format, kept as plain counters (the hot path only adds)."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Sequence

LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    """Cumulative-bucket histogram: counts per upper bound, plus sum and count."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # last slot: +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def render(self, name: str, help_text: str) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        lines += [f"{name}_sum {self.total:.6f}", f"{name}_count {self.count}"]
        return lines


class ServerMetrics:
    """Everything /metrics shows; gauges are read through callables at scrape time."""

    def __init__(self, queue_depth: Callable[[], int], workers_ready: Callable[[], int]) -> None:
        self.requests = Counter[int]()
        self.latency = Histogram(LATENCY_BUCKETS_S)
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.worker_restarts = 0
        self._queue_depth = queue_depth
        self._workers_ready = workers_ready

    def observe_request(self, status: int, seconds: float) -> None:
        self.requests[status] += 1
        self.latency.observe(seconds)

    def render(self) -> str:
        lines = [
            "# HELP deploybench_requests_total Invocation requests answered, by HTTP status.",
            "# TYPE deploybench_requests_total counter",
        ]
        lines += [f'deploybench_requests_total{{status="{s}"}} {n}' for s, n in sorted(self.requests.items())]
        lines += self.latency.render(
            "deploybench_request_latency_seconds", "Time from request received to response ready."
        )
        lines += self.batch_size.render("deploybench_batch_size", "Requests per model predict call.")
        lines += [
            "# HELP deploybench_queue_depth Requests waiting for a worker.",
            "# TYPE deploybench_queue_depth gauge",
            f"deploybench_queue_depth {self._queue_depth()}",
            "# HELP deploybench_workers_ready Worker processes loaded, warmed and serving.",
            "# TYPE deploybench_workers_ready gauge",
            f"deploybench_workers_ready {self._workers_ready()}",
            "# HELP deploybench_worker_restarts_total Worker processes restarted after dying.",
            "# TYPE deploybench_worker_restarts_total counter",
            f"deploybench_worker_restarts_total {self.worker_restarts}",
        ]
        return "\n".join(lines) + "\n"
