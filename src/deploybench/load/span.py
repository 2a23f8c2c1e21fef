"""Raw counts over time: a slice (one tick of every worker, merged) and a span (a run of slices).

Histograms stay sparse bucket counts here; a span turns them into dense counts only when asked
(a window's summary, the point's figures), by adding raw counts, never percentiles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from deploybench.load.intervals import Block
from deploybench.load.shapes import BACKLOG, TIMEOUT
from deploybench.load.stats import Sparse, dense, stats_from_counts
from deploybench.results import LatencyStats, RequestAccounting

_EMPTY: Sparse = (np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64))
HISTOGRAMS = ("latency", "lateness", "gap")
COUNTERS = ("ok", "bytes_sent", "bytes_received", "sends", "late_sends")


def _concat(parts: list[Sparse]) -> Sparse:
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return _EMPTY
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@dataclass
class Slice:
    """One span of time since the shared epoch, every worker's slice of it merged."""

    duration_s: float = 0.0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0
    sends: int = 0
    late_sends: int = 0
    timing_sum: dict[str, float] = field(default_factory=dict)
    timing_count: dict[str, int] = field(default_factory=dict)
    cpu_s: dict[int, float] = field(default_factory=dict)  # per worker
    latency: Sparse = _EMPTY
    lateness: Sparse = _EMPTY
    gap: Sparse = _EMPTY
    final: bool = False

    @classmethod
    def merge(cls, messages: list[dict]) -> Slice:
        """Workers' slices of the same index run side by side: counts add, the duration is the longest."""
        piece = cls(
            duration_s=max(m["duration_s"] for m in messages), final=any(m["final"] for m in messages)
        )
        for message in messages:
            for name in COUNTERS:
                setattr(piece, name, getattr(piece, name) + message[name])
            _add_dict(piece.errors, message["errors"])
            _add_dict(piece.timing_sum, message["timing_sum"])
            _add_dict(piece.timing_count, message["timing_count"])
            piece.cpu_s[message["worker"]] = message["cpu_s"]
        for name in HISTOGRAMS:
            setattr(piece, name, _concat([m[name] for m in messages]))
        return piece

    @property
    def requests(self) -> int:
        return self.ok + sum(self.errors.values())


def _add_dict(into: dict, other: dict) -> None:
    for key, value in other.items():
        into[key] = into.get(key, 0) + value


@dataclass
class Span:
    """A run of slices in time order (the warm-up, a window, the tail, the whole point)."""

    slices: list[Slice] = field(default_factory=list)

    def add(self, piece: Slice) -> None:
        self.slices.append(piece)
        self.__dict__.pop("latency_counts", None)

    @classmethod
    def of(cls, spans: list[Span]) -> Span:
        return cls([piece for span in spans for piece in span.slices])

    def total(self, name: str) -> int:
        return sum(getattr(piece, name) for piece in self.slices)

    @property
    def duration_s(self) -> float:
        return sum(piece.duration_s for piece in self.slices)

    @property
    def ok(self) -> int:
        return self.total("ok")

    @property
    def errors(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for piece in self.slices:
            _add_dict(merged, piece.errors)
        return merged

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def requests(self) -> int:
        return self.ok + self.error_count

    def counts(self, name: str) -> np.ndarray:
        """Dense bucket counts of one histogram ("latency", "lateness", "gap") over the span."""
        if name == "latency":
            return self.latency_counts
        return dense([getattr(piece, name) for piece in self.slices])

    @cached_property
    def latency_counts(self) -> np.ndarray:
        return dense([piece.latency for piece in self.slices])

    def stats(self, name: str = "latency") -> LatencyStats:
        return stats_from_counts(self.counts(name))

    def cpu_s(self) -> dict[int, float]:
        per_worker: dict[int, float] = {}
        for piece in self.slices:
            _add_dict(per_worker, piece.cpu_s)
        return per_worker

    def timing_means(self) -> dict[str, float]:
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for piece in self.slices:
            _add_dict(sums, piece.timing_sum)
            _add_dict(counts, piece.timing_count)
        return {name: sums[name] / counts[name] for name in sums if counts.get(name)}

    def blocks(self) -> list[Block]:
        """The slices as interval blocks (replies and latencies of each tick)."""
        return [Block(piece.duration_s, piece.ok, piece.latency) for piece in self.slices]

    def accounting(self) -> RequestAccounting:
        errors = self.errors
        timed_out = errors.get(TIMEOUT, 0)
        return RequestAccounting(
            issued=self.total("sends"),
            completed=self.ok,
            errors=sum(errors.values()) - timed_out,
            timed_out=timed_out,
        )

    @property
    def backlog_drops(self) -> int:
        return self.errors.get(BACKLOG, 0)
