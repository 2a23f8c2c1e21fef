"""Turns the workers' raw slices into warm-up, windows and one LoadPoint.

Slices with the same index (same span of time since the shared epoch) are merged across
workers by adding histograms; windows are built from merged slices until they last at least
window_s AND hold min_window_requests; the point ends when the last 3 windows agree, after
max_windows, at the duration bound, or when the workers run out of requests.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from deploybench.config import LoadConfig
from deploybench.load.health import judge_client
from deploybench.load.result import LiveStats, PointDetail, WindowSummary
from deploybench.load.shapes import LAG_THRESHOLDS_MS
from deploybench.load.stats import (
    add_into,
    decode_histogram,
    encode_histogram,
    is_stable,
    new_histogram,
    slo_verdict,
    stats_from_histogram,
)
from deploybench.results import LoadPoint

STABLE_WINDOWS = 3


@dataclass
class Span:
    """Raw counts merged over a span of time (a slice, a window, a point)."""

    hist: HdrHistogram = field(default_factory=new_histogram)
    duration_s: float = 0.0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0
    sends: int = 0
    late_sends: int = 0
    lag_samples: int = 0
    lag_late: list[int] = field(default_factory=lambda: [0] * len(LAG_THRESHOLDS_MS))
    timing_sum: dict[str, float] = field(default_factory=dict)
    timing_count: dict[str, int] = field(default_factory=dict)
    cpu_s: dict[int, float] = field(default_factory=dict)  # per worker

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def requests(self) -> int:
        return self.ok + self.error_count

    def add_message(self, message: dict) -> None:
        """Add one worker's slice (the duration is set by the caller: slices run side by side)."""
        if message["hist"]:
            self.hist.decode_and_add(message["hist"].encode("ascii"))
        self._add_counts(message, message["timing_sum"], message["timing_count"])
        worker = message["worker"]
        self.cpu_s[worker] = self.cpu_s.get(worker, 0.0) + message["cpu_s"]

    def add_span(self, other: Span) -> None:
        """Append a later span in time: durations add up, histograms merge raw."""
        add_into(self.hist, [other.hist])
        self.duration_s += other.duration_s
        self._add_counts(other.__dict__, other.timing_sum, other.timing_count)
        for worker, cpu in other.cpu_s.items():
            self.cpu_s[worker] = self.cpu_s.get(worker, 0.0) + cpu

    def _add_counts(self, counts: dict, timing_sum: dict[str, float], timing_count: dict[str, int]) -> None:
        self.ok += counts["ok"]
        for name, value in counts["errors"].items():
            self.errors[name] = self.errors.get(name, 0) + value
        for name in ("bytes_sent", "bytes_received", "sends", "late_sends", "lag_samples"):
            setattr(self, name, getattr(self, name) + counts[name])
        self.lag_late = [a + b for a, b in zip(self.lag_late, counts["lag_late"], strict=True)]
        for name, value in timing_sum.items():
            self.timing_sum[name] = self.timing_sum.get(name, 0.0) + value
            self.timing_count[name] = self.timing_count.get(name, 0) + timing_count.get(name, 0)

    def summary(self) -> WindowSummary:
        return WindowSummary(
            duration_s=round(self.duration_s, 4), ok=self.ok, errors=self.error_count,
            throughput_rps=self.ok / self.duration_s if self.duration_s > 0 else 0.0,
            p99_ms=stats_from_histogram(self.hist).p99_ms,
        )


class PointMeter:
    """Consumes worker messages for one point and decides when it is done."""

    def __init__(self, cfg: LoadConfig, workers: int, label: str) -> None:
        self.cfg, self.workers, self.label = cfg, workers, label
        self.pending: dict[int, dict[int, dict]] = {}
        self.next_index = 0
        self.done: set[int] = set()
        self.elapsed_s = 0.0
        self.warm = cfg.warmup_s <= 0 and cfg.warmup_requests <= 0
        self.warmup = Span()
        self.current = Span()
        self.windows: list[Span] = []
        self.recent: deque[Span] = deque(maxlen=4)
        self.stop_reason = ""

    @property
    def finished(self) -> bool:
        return bool(self.stop_reason)

    def feed(self, message: dict) -> int:
        """Take one worker message; returns how many merged slices became complete."""
        kind, worker = message["type"], message["worker"]
        if kind == "slice":
            self.pending.setdefault(message["index"], {})[worker] = message
        elif kind == "done":
            self.done.add(worker)
        advanced = 0
        while not self.finished and self._complete(self.next_index):
            self._process(self._merge(self.pending.pop(self.next_index, {})))
            self.next_index += 1
            advanced += 1
        if not self.finished and len(self.done) == self.workers and not self.pending:
            self.stop_reason = "request budget used" if self.cfg.max_requests else "workers finished"
        return advanced

    def _complete(self, index: int) -> bool:
        present = self.pending.get(index, {})
        if not present:
            return False
        return all(worker in present or worker in self.done for worker in range(self.workers))

    @staticmethod
    def _merge(messages: dict[int, dict]) -> Span:
        span = Span()
        for message in messages.values():
            span.add_message(message)
        span.duration_s = max(message["duration_s"] for message in messages.values())
        return span

    def _process(self, piece: Span) -> None:
        self.elapsed_s += piece.duration_s
        self.recent.append(piece)
        if not self.warm:
            self.warmup.add_span(piece)
            self.warm = (self.warmup.duration_s >= self.cfg.warmup_s
                         and self.warmup.requests >= self.cfg.warmup_requests)
            if self.warm and self.warmup.requests and not self.warmup.ok:
                errors = ", ".join(f"{k} x{v}" for k, v in sorted(self.warmup.errors.items()))
                self.stop_reason = f"every warm-up request failed ({errors})"  # no point measuring
        else:
            self.current.add_span(piece)
            if (self.current.duration_s >= self.cfg.window_s
                    and self.current.requests >= self.cfg.min_window_requests):
                self._close_window()
        if not self.finished and self.elapsed_s >= self.cfg.duration_s - 1e-6:
            self.stop_reason = "duration reached"

    def _close_window(self) -> None:
        self.windows.append(self.current)
        self.current = Span()
        if self.stable:
            self.stop_reason = "stable"
        elif len(self.windows) >= self.cfg.max_windows:
            self.stop_reason = "max windows reached"

    @property
    def stable(self) -> bool:
        summaries = [window.summary() for window in self.windows[-STABLE_WINDOWS:]]
        return is_stable([s.throughput_rps for s in summaries], [s.p99_ms for s in summaries],
                         self.cfg.stability_tolerance, STABLE_WINDOWS)

    def live(self) -> LiveStats:
        recent = Span()
        for piece in self.recent:
            recent.add_span(piece)
        stats = stats_from_histogram(recent.hist)
        errors = sum(w.error_count for w in self.windows) + self.current.error_count
        return LiveStats(
            label=self.label, phase="measuring" if self.warm else "warm-up", elapsed_s=self.elapsed_s,
            rate_rps=recent.ok / recent.duration_s if recent.duration_s else 0.0,
            p50_ms=stats.p50_ms, p99_ms=stats.p99_ms, errors=errors + self.warmup.error_count,
            windows=len(self.windows),
        )

    def chosen(self) -> tuple[list[Span], bool]:
        """The windows the point reports: the last 3 when stable, else all (never silently dropped)."""
        if self.windows and self.stable:
            return self.windows[-STABLE_WINDOWS:], True
        if self.windows:
            return self.windows, False
        if self.current.requests:
            return [self.current], False
        return [self.warmup], False

    def point(self, mode: str, concurrency: int | None, rate: float | None) -> tuple[LoadPoint, PointDetail]:
        """Merge the chosen windows (raw histograms) into the point and its detail record."""
        spans, stable = self.chosen()
        merged = Span()
        for span in spans:
            merged.add_span(span)
        point = _point_from_span(merged, mode, concurrency, rate, stable, len(spans), self.cfg)
        detail = PointDetail(
            label=self.label, windows=[w.summary() for w in self.windows], merged_windows=len(spans),
            warmup_s=round(self.warmup.duration_s, 3), warmup_requests=self.warmup.requests,
            stop_reason=self.stop_reason or "stopped", processes=self.workers,
        )
        if not self.windows:
            detail.stop_reason += "; no full window: figures come from a partial window"
        return point, detail


def _point_from_span(span: Span, mode: str, concurrency: int | None, rate: float | None,
                     stable: bool, windows: int, cfg: LoadConfig) -> LoadPoint:
    duration = span.duration_s
    cpu = max((100.0 * cpu_s / duration for cpu_s in span.cpu_s.values()), default=None) if duration else None
    late = span.late_sends / span.sends if span.sends else None
    latency = stats_from_histogram(span.hist)
    lag_ms = 1.0
    if mode != "open":
        late, lag_ms = _closed_loop_lateness(span, latency.p50_ms)
    health = judge_client(cpu, late, open_loop=mode == "open", late_ms=lag_ms)
    return LoadPoint(
        mode=mode, concurrency=concurrency, target_rate=rate, duration_s=round(duration, 4),
        ok=span.ok, errors=dict(span.errors),
        throughput_rps=span.ok / duration if duration > 0 else 0.0,
        latency=latency, stable=stable, windows=windows,
        client_bound=health.client_bound and mode != "inprocess",
        client_cpu_pct=None if cpu is None else round(cpu, 1),
        late_send_fraction=None if late is None else round(late, 5),
        bytes_sent=span.bytes_sent, bytes_received=span.bytes_received,
        server_timing_ms={name: span.timing_sum[name] / span.timing_count[name]
                          for name in span.timing_sum if span.timing_count.get(name)},
        histogram=encode_histogram(span.hist),
        slo=slo_verdict(span.hist, span.error_count, cfg.slo_p99_ms) if cfg.slo_p99_ms else None,
    )


def _closed_loop_lateness(span: Span, p50_ms: float) -> tuple[float | None, float]:
    """Fraction of event-loop wake-ups late by more than max(1 ms, 1% of p50), and that bound.

    A closed-loop client has no schedule; what hurts is loop lag that is large next to the latency
    it measures (1 ms matters at a 1 ms p50, not at 1.6 s).
    """
    if not span.lag_samples:
        return None, 1.0
    bound = max(1.0, 0.01 * p50_ms)
    index = max(i for i, threshold in enumerate(LAG_THRESHOLDS_MS) if threshold <= bound)
    return span.lag_late[index] / span.lag_samples, float(LAG_THRESHOLDS_MS[index])


def client_bound_reasons(point: LoadPoint) -> list[str]:
    """Re-derive the reasons for the detail record (the LoadPoint keeps only the flag)."""
    lag_ms = 1.0
    if point.mode != "open":
        bound = max(1.0, 0.01 * point.latency.p50_ms)
        lag_ms = float(max(t for t in LAG_THRESHOLDS_MS if t <= bound))
    return judge_client(point.client_cpu_pct, point.late_send_fraction, point.mode == "open", lag_ms).reasons


__all__ = ["PointMeter", "Span", "client_bound_reasons", "decode_histogram"]
