"""Turns the workers' raw slices into warm-up, windows, a tail and one LoadPoint.

Slices with the same index (same span of time since the shared epoch) are merged across workers by
adding counts; windows are built from merged slices until they last at least window_s AND hold
min_window_requests, never fewer than the stability rule can resolve (40 at a 10% tolerance), and
with an SLO at least a third of the requests a verdict needs, so the three windows a stable point
reports can decide it. The point ends when the last 3 windows agree by
perf_analyzer's rule, when an SLO verdict is plainly missed, after max_windows, at the duration
bound, when the workers run out of requests, or when a worker dies (the point is then invalid).
Replies that arrive after the end (requests in flight) form the tail: counted, never dropped.
"""

from __future__ import annotations

import math

from deploybench.config import LoadConfig
from deploybench.load.early_stopping import required_requests, slo_verdict
from deploybench.load.load_report import LiveStats, PointDetail, WindowSummary
from deploybench.load.point import build_point
from deploybench.load.span import Slice, Span
from deploybench.load.stats import STABLE_WINDOWS, Stability, stability, stats_from_counts
from deploybench.load.stats import dense as dense_counts
from deploybench.results import LoadPoint

LIVE_SLICES = 4
# A window's throughput moves by 1/n when one request more or less lands in it (at saturation a
# closed loop completes them like a clock). For max/min within the tolerance to say anything about
# the server, one request must move it by at most a quarter of the tolerance: 40 requests at 10%.
STABILITY_RESOLUTION = 4
MAX_RESOLUTION_REQUESTS = 200  # a near-zero tolerance (never stop early) must not ask for millions


def resolution_floor(tolerance: float) -> int:
    """Fewest requests a window needs for the stability rule to see its tolerance."""
    return min(math.ceil(STABILITY_RESOLUTION / tolerance), MAX_RESOLUTION_REQUESTS)


def window_summary(span: Span) -> WindowSummary:
    stats = span.stats()
    duration = span.duration_s
    return WindowSummary(
        duration_s=round(duration, 4),
        ok=span.ok,
        errors=span.error_count,
        throughput_rps=span.ok / duration if duration > 0 else 0.0,
        p50_ms=stats.p50_ms,
        p99_ms=stats.p99_ms,
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
        self.warmup, self.current, self.tail = Span(), Span(), Span()
        self.windows: list[Span] = []
        self.summaries: list[WindowSummary] = []
        self.recent: list[Slice] = []
        self.stop_reason = ""
        self.invalid_reason: str | None = None
        self.min_window_requests = max(cfg.min_window_requests, resolution_floor(cfg.stability_tolerance))
        if cfg.slo_p99_ms is not None:
            self.min_window_requests = max(
                self.min_window_requests, math.ceil(required_requests(0) / STABLE_WINDOWS)
            )

    @property
    def finished(self) -> bool:
        return bool(self.stop_reason)

    def feed(self, message: dict) -> int:
        """Take one worker message; returns how many merged slices became complete."""
        kind, worker = message["type"], message["worker"]
        if kind == "slice":
            self.pending.setdefault(message["index"], {})[worker] = message
        elif kind in ("done", "died"):
            self.done.add(worker)
        if kind in ("died", "error") and self.invalid_reason is None:
            text = message["message"]
            # its share of the load stopped: what the others measured is not the point asked for
            self.invalidate(text if kind == "died" else f"load worker {worker} failed: {text}")
        advanced = 0
        while self._complete(self.next_index):
            self._process(Slice.merge(list(self.pending.pop(self.next_index).values())))
            self.next_index += 1
            advanced += 1
        if not self.finished and len(self.done) == self.workers and not self.pending:
            self.stop_reason = "request budget used" if self.cfg.max_requests else "workers finished"
        return advanced

    def invalidate(self, why: str) -> None:
        """The measurement broke (a load worker died): stop now; the point is never a result."""
        self.invalid_reason = why
        if not self.finished:
            self.stop_reason = why

    def _complete(self, index: int) -> bool:
        present = self.pending.get(index, {})
        if not present:
            return False
        return all(worker in present or worker in self.done for worker in range(self.workers))

    def _process(self, piece: Slice) -> None:
        if self.finished or piece.final:
            self.tail.add(piece)  # replies after measuring stopped: in the figures, not the rate
            return
        self.elapsed_s += piece.duration_s
        self.recent = [*self.recent[-(LIVE_SLICES - 1) :], piece]
        if not self.warm:
            self._warm_up(piece)
        else:
            self.current.add(piece)
            if (
                self.current.duration_s >= self.cfg.window_s
                and self.current.requests >= self.min_window_requests
            ):
                self._close_window()
        if not self.finished and self.elapsed_s >= self.cfg.duration_s - 1e-6:
            self.stop_reason = "duration reached"

    def _warm_up(self, piece: Slice) -> None:
        self.warmup.add(piece)
        self.warm = (
            self.warmup.duration_s >= self.cfg.warmup_s and self.warmup.requests >= self.cfg.warmup_requests
        )
        if self.warm and self.warmup.requests and not self.warmup.ok:
            errors = ", ".join(f"{k} x{v}" for k, v in sorted(self.warmup.errors.items()))
            self.stop_reason = f"every warm-up request failed ({errors})"  # no point measuring

    def _close_window(self) -> None:
        self.windows.append(self.current)
        self.summaries.append(window_summary(self.current))
        self.current = Span()
        if self.stability.stable:
            self.stop_reason = "stable"
        elif self._slo_missed():
            self.stop_reason = f"SLO verdict decided: p99 above {self.cfg.slo_p99_ms:g} ms"
        elif len(self.windows) >= self.cfg.max_windows:
            self.stop_reason = "max windows reached"

    def _slo_missed(self) -> bool:
        if self.cfg.slo_p99_ms is None:
            return False
        recent = Span.of(self.windows[-STABLE_WINDOWS:])
        return slo_verdict(recent.latency_counts, recent.error_count, self.cfg.slo_p99_ms).status == "missed"

    @property
    def stability(self) -> Stability:
        return stability(self.summaries, self.cfg.stability_tolerance, STABLE_WINDOWS)

    def live(self) -> LiveStats:
        """The last ticks' rate and percentiles, for the live line (cheap: a few slices)."""
        duration = sum(piece.duration_s for piece in self.recent)
        stats = stats_from_counts(dense_counts([piece.latency for piece in self.recent]))
        errors = sum(w.error_count for w in self.windows) + self.current.error_count
        return LiveStats(
            label=self.label,
            phase="measuring" if self.warm else "warm-up",
            elapsed_s=self.elapsed_s,
            rate_rps=sum(piece.ok for piece in self.recent) / duration if duration else 0.0,
            p50_ms=stats.p50_ms,
            p99_ms=stats.p99_ms,
            errors=errors + self.warmup.error_count,
            windows=len(self.windows),
        )

    def chosen(self) -> tuple[list[Span], bool]:
        """The windows the point reports: the last 3 when stable, else all (never silently dropped)."""
        stable = self.stability.stable
        if self.windows and stable:
            return self.windows[-STABLE_WINDOWS:], True
        if self.windows:
            return self.windows, False
        if self.current.slices:
            return [self.current], False
        return [self.warmup], False

    def everything(self) -> Span:
        """Every slice the point saw, warm-up and tail included: the request accounting's scope."""
        return Span.of([self.warmup, *self.windows, self.current, self.tail])

    def point(self, mode: str, concurrency: int | None, rate: float | None) -> tuple[LoadPoint, PointDetail]:
        """The point (chosen windows + tail) and its detail record."""
        spans, stable = self.chosen()
        why = self.stability.reason if self.windows else "no full window: figures come from a partial window"
        point = build_point(
            Span.of(spans),
            self.tail,
            self.everything(),
            mode=mode,
            concurrency=concurrency,
            rate=rate,
            stable=stable,
            windows=len(spans),
            cfg=self.cfg,
            unstable_reason=None if stable else why,
            invalid_reason=self.invalid_reason,
        )
        detail = PointDetail(
            label=self.label,
            windows=self.summaries,
            merged_windows=len(spans),
            warmup_s=round(self.warmup.duration_s, 3),
            warmup_requests=self.warmup.requests,
            stop_reason=self.stop_reason or "stopped",
            processes=self.workers,
            client_bound_reasons=[f for f in point.flags if f.startswith("client-bound")],
            tail_requests=self.tail.requests,
        )
        if not self.windows:
            detail.stop_reason += "; no full window: figures come from a partial window"
        return point, detail


__all__ = ["PointMeter", "window_summary"]
