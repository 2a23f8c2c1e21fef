"""Latency statistics the load generator can be trusted on.

Raw data first: every measurement is an HDR histogram at microsecond resolution. On the hot path
and between processes it travels as sparse bucket counts (numpy), is merged by adding counts, and
becomes an encoded HdrHistogram (base64, safe for JSON) only in the result: windows, processes and
machines merge raw counts, never averages of percentiles. Also here: the window stability rule.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

from deploybench.results import LatencyStats

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: any latency a bounded run can see
SIGNIFICANT_FIGURES = 3
STABLE_WINDOWS = 3
# a window's p99 from fewer requests is its slowest reply or two: it jumps between identical windows
# by more than any tolerance, so below this the latency test uses the p50 (perf_analyzer's default
# latency is the mean; the median is as stable and is what we report)
P99_STABILITY_MIN_REQUESTS = 1000

Sparse = tuple[np.ndarray, np.ndarray]  # (bucket indices, counts)


def new_histogram() -> HdrHistogram:
    """An empty microsecond histogram with the project-wide range and precision."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def encode_histogram(hist: HdrHistogram) -> str:
    """Base64 text (HdrHistogram's compressed V2 encoding), safe for JSON."""
    return hist.encode().decode("ascii")


def decode_histogram(encoded: str) -> HdrHistogram:
    """Inverse of encode_histogram, into a histogram with the project-wide range."""
    hist = new_histogram()
    if encoded:
        hist.decode_and_add(encoded.encode("ascii"))
    return hist


def merge_histograms(encoded: Iterable[str | None]) -> str:
    """Merge encoded histograms (windows, processes, machines) by adding raw counts."""
    merged = new_histogram()
    for item in encoded:
        if item:
            merged.decode_and_add(item.encode("ascii"))
    return encode_histogram(merged)


def add_into(target: HdrHistogram, others: Iterable[HdrHistogram]) -> HdrHistogram:
    """Add raw counts of `others` into `target` (in place) and return it."""
    for other in others:
        if other.get_total_count():
            target.add(other)
    return target


@functools.cache
def bucket_values() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lowest, highest and median equivalent value of every counts-array slot (same for all ours).

    hdrh walks its slots one by one in Python for every percentile; with these tables numpy does it
    in one vectorised pass. Built once per process and cached.
    """
    hist = new_histogram()
    lowest = np.array([hist.get_value_from_index(i) for i in range(hist.counts_len)], dtype=np.int64)
    highest = np.array([hist.get_highest_equivalent_value(int(v)) for v in lowest], dtype=np.int64)
    median = lowest + ((highest - lowest + 1) >> 1)
    return lowest, highest, median


def slots() -> int:
    return len(bucket_values()[0])


def sparse_from_values(values_us: Sequence[int] | np.ndarray) -> Sparse:
    """Bucket counts of raw microsecond values, computed at once (no per-request histogram call)."""
    if len(values_us) == 0:
        return np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64)
    values = np.clip(np.asarray(values_us, dtype=np.int64), LOWEST_US, HIGHEST_US)
    index = np.searchsorted(bucket_values()[0], values, side="right") - 1
    buckets, counts = np.unique(index, return_counts=True)
    return buckets.astype(np.int32), counts.astype(np.int64)


def dense(parts: Iterable[Sparse]) -> np.ndarray:
    """Add sparse bucket counts into one dense counts array."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return np.zeros(slots(), dtype=np.int64)
    index = np.concatenate([p[0] for p in parts])
    weights = np.concatenate([p[1] for p in parts]).astype(np.float64)
    return np.rint(np.bincount(index, weights=weights, minlength=slots())).astype(np.int64)


def counts_of(hist: HdrHistogram | str | np.ndarray | None) -> np.ndarray:
    """Dense int64 bucket counts of a histogram, its encoding, or a counts array."""
    if isinstance(hist, np.ndarray):
        return hist
    if hist is None:
        return np.zeros(slots(), dtype=np.int64)
    if isinstance(hist, str):
        hist = decode_histogram(hist)
    return np.frombuffer(hist.counts, dtype=np.uint64, count=hist.counts_len).astype(np.int64)


def histogram_from_counts(counts: np.ndarray) -> HdrHistogram:
    """An HdrHistogram holding these bucket counts (for the encoded copy in the result)."""
    hist = new_histogram()
    lowest = bucket_values()[0]
    for index in np.flatnonzero(counts):
        hist.record_value(int(lowest[index]), int(counts[index]))
    return hist


def value_at_ranks(counts: np.ndarray, ranks: Sequence[int]) -> list[int]:
    """Highest equivalent value of the slot holding the rank-th smallest value (1 = the smallest)."""
    highest = bucket_values()[1]
    cumulative = np.cumsum(counts)
    slots_at = np.searchsorted(cumulative, [max(int(r), 1) for r in ranks], side="left")
    return [int(highest[min(slot, len(highest) - 1)]) for slot in slots_at]


def value_at_percentiles(hist: HdrHistogram | np.ndarray, percentiles: Sequence[float]) -> list[int]:
    """HdrHistogram's definition (highest equivalent value of the slot reaching the count), fast."""
    counts = counts_of(hist)
    total = int(counts.sum())
    return value_at_ranks(counts, [int(min(p, 100.0) * total / 100 + 0.5) for p in percentiles])


def stats_from_counts(counts: np.ndarray) -> LatencyStats:
    """Percentiles in milliseconds from dense bucket counts."""
    count = int(counts.sum())
    if not count:
        return LatencyStats()
    p50, p90, p95, p99, p999 = value_at_percentiles(counts, [50, 90, 95, 99, 99.9])
    _, highest, median = bucket_values()
    mean_us = float((counts * median).sum()) / count  # integer sum: no BLAS (see _no_blas in intervals)
    return LatencyStats(
        count=count,
        mean_ms=mean_us / 1000.0,
        p50_ms=p50 / 1000.0,
        p90_ms=p90 / 1000.0,
        p95_ms=p95 / 1000.0,
        p99_ms=p99 / 1000.0,
        p999_ms=p999 / 1000.0,
        max_ms=int(highest[np.flatnonzero(counts)[-1]]) / 1000.0,
    )


def stats_from_histogram(hist: HdrHistogram | str | None) -> LatencyStats:
    """Percentiles in milliseconds from a histogram object or its encoding."""
    return stats_from_counts(counts_of(hist))


def count_above(hist: HdrHistogram | np.ndarray, bound_us: int) -> int:
    """Recorded values strictly above bound_us (at histogram precision)."""
    return int(counts_of(hist)[bucket_values()[1] > bound_us].sum())


# ---------------------------------------------------------------- windows and stability


class WindowLike:
    """What the stability rule reads from a window (WindowSummary satisfies it)."""

    ok: int
    errors: int
    throughput_rps: float
    p50_ms: float
    p99_ms: float


@dataclass
class Stability:
    """The verdict on the last windows, and in words why (with the number that decided it)."""

    stable: bool
    reason: str


def _spread(values: Sequence[float]) -> float:
    """perf_analyzer's measure: max / min (inf when the min is 0)."""
    low, high = min(values), max(values)
    return high / low if low > 0 else float("inf")


def stability(
    windows: Sequence[WindowLike], tolerance: float = 0.10, last: int = STABLE_WINDOWS
) -> Stability:
    """perf_analyzer's rule on the last `last` windows: every one completed requests, and max/min of
    throughput and of latency are within 1 + tolerance. The latency is the p99 when every window
    holds P99_STABILITY_MIN_REQUESTS, else the p50."""
    if len(windows) < last:
        return Stability(False, f"{len(windows)} of the {last} windows stability needs")
    recent = windows[-last:]
    if any(w.ok <= 0 or w.throughput_rps <= 0 for w in recent):
        return Stability(False, "a window with no completed request")
    use_p99 = min(w.ok + w.errors for w in recent) >= P99_STABILITY_MIN_REQUESTS
    name = "p99" if use_p99 else "p50"
    latency = [w.p99_ms if use_p99 else w.p50_ms for w in recent]
    limit = 1 + tolerance
    for what, values in (("throughput", [w.throughput_rps for w in recent]), (name, latency)):
        spread = _spread(values)
        if spread > limit:
            return Stability(
                False, f"{what} max/min {spread:.2f} over the last {last} windows (limit {limit:.2f})"
            )
    return Stability(True, f"throughput and {name} within max/min {limit:.2f} over the last {last} windows")


def is_stable(windows: Sequence[WindowLike], tolerance: float = 0.10, last: int = STABLE_WINDOWS) -> bool:
    """True when `stability` says stable."""
    return stability(windows, tolerance, last).stable
