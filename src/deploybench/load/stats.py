"""Latency statistics the load generator can be trusted on.

Raw data first: every measurement is an HDR histogram at microsecond resolution, encoded as
base64 so windows, processes and machines merge raw counts, never averages of percentiles.
Also here: the window stability rule and MLPerf LoadGen's early-stopping test for SLO claims.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from hdrh.histogram import HdrHistogram

from deploybench.results import LatencyStats, SloVerdict

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: any latency a bounded run can see
SIGNIFICANT_FIGURES = 3
EXACT_CDF_LIMIT = 2000


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
def _bucket_values() -> tuple[np.ndarray, np.ndarray]:
    """Highest and median equivalent value of every counts-array slot (same layout for all ours).

    hdrh computes percentiles and the mean in pure-Python loops over ~23k slots (50 ms each);
    with these tables numpy does it in well under a millisecond, so the parent never holds the
    GIL long enough to stall a worker thread.
    """
    hist = new_histogram()
    lowest = np.array([hist.get_value_from_index(i) for i in range(hist.counts_len)], dtype=np.int64)
    highest = np.array([hist.get_highest_equivalent_value(int(v)) for v in lowest], dtype=np.int64)
    median = lowest + ((highest - lowest + 1) >> 1)
    return highest, median


def _counts(hist: HdrHistogram) -> np.ndarray:
    return np.frombuffer(hist.counts, dtype=np.uint64, count=hist.counts_len)


def value_at_percentiles(hist: HdrHistogram, percentiles: Sequence[float]) -> list[int]:
    """HdrHistogram's definition (highest equivalent value of the slot reaching the count), fast."""
    highest, _ = _bucket_values()
    total = hist.get_total_count()
    cumulative = np.cumsum(_counts(hist))
    targets = [max(int(min(p, 100.0) * total / 100 + 0.5), 1) for p in percentiles]
    slots = np.searchsorted(cumulative, targets, side="left")
    return [int(highest[min(slot, len(highest) - 1)]) for slot in slots]


def stats_from_histogram(hist: HdrHistogram | str | None) -> LatencyStats:
    """Percentiles in milliseconds from a histogram object or its encoding."""
    if hist is None:
        return LatencyStats()
    if isinstance(hist, str):
        hist = decode_histogram(hist)
    count = hist.get_total_count()
    if not count:
        return LatencyStats()
    p50, p90, p95, p99, p999 = value_at_percentiles(hist, [50, 90, 95, 99, 99.9])
    _, median = _bucket_values()
    mean_us = float(np.dot(_counts(hist).astype(np.float64), median)) / count
    return LatencyStats(
        count=count,
        mean_ms=mean_us / 1000.0,
        p50_ms=p50 / 1000.0,
        p90_ms=p90 / 1000.0,
        p95_ms=p95 / 1000.0,
        p99_ms=p99 / 1000.0,
        p999_ms=p999 / 1000.0,
        max_ms=hist.get_max_value() / 1000.0,
    )


def count_above(hist: HdrHistogram, bound_us: int) -> int:
    """Recorded values strictly above bound_us (at histogram precision)."""
    highest, _ = _bucket_values()
    return int(_counts(hist)[highest > bound_us].sum())


# ---------------------------------------------------------------- windows and stability


@dataclass
class WindowStat:
    """One measurement window: enough to judge stability and to merge later."""

    duration_s: float
    ok: int
    errors: int
    throughput_rps: float
    p99_ms: float
    histogram: HdrHistogram = field(repr=False)


def _within(values: Sequence[float], tolerance: float) -> bool:
    """perf_analyzer's rule: every value within ±tolerance of the values' mean."""
    mean = sum(values) / len(values)
    if mean == 0:
        return all(v == 0 for v in values)
    return all(abs(v - mean) <= tolerance * mean for v in values)


def is_stable(
    throughputs: Sequence[float], p99s: Sequence[float], tolerance: float = 0.10, last: int = 3
) -> bool:
    """Stable when the last `last` windows agree within tolerance on throughput AND on p99."""
    if len(throughputs) < last or len(p99s) < last:
        return False
    return _within(throughputs[-last:], tolerance) and _within(p99s[-last:], tolerance)


# ---------------------------------------------------------------- early stopping (MLPerf LoadGen)


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), in log space so large n does not underflow."""
    if p <= 0:
        return 1.0
    if k > EXACT_CDF_LIMIT:  # normal approximation with continuity correction: exact sum is too slow
        mean, sd = n * p, math.sqrt(n * p * (1 - p))
        return 0.5 * (1 + math.erf((k + 0.5 - mean) / (sd * math.sqrt(2))))
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for i in range(k + 1):
        log_term = math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
        total += math.exp(log_term + i * log_p + (n - i) * log_q)
    return total


def early_stopping_passes(
    n: int, overshoots: int, percentile: float = 99.0, confidence: float = 0.99
) -> bool:
    """Can we claim the percentile meets the bound, given n requests and `overshoots` above it?

    LoadGen's test: if the true overshoot rate were (100 - percentile)%, seeing this few
    overshoots in n requests would have probability <= 1 - confidence.
    """
    if n <= overshoots:
        return False
    return _binomial_cdf(overshoots, n, 1.0 - percentile / 100.0) <= 1.0 - confidence


def required_requests(overshoots: int, percentile: float = 99.0, confidence: float = 0.99) -> int:
    """Fewest requests that let the claim pass with this many overshoots (459 for 0, 662 for 1 at p99)."""
    low, high = overshoots + 1, max(overshoots + 2, 64)
    while not early_stopping_passes(high, overshoots, percentile, confidence):
        low, high = high, high * 2
    while low < high:  # the CDF falls monotonically with n: bisect for the first passing n
        mid = (low + high) // 2
        if early_stopping_passes(mid, overshoots, percentile, confidence):
            high = mid
        else:
            low = mid + 1
    return low


def slo_verdict(
    hist: HdrHistogram, errors: int, bound_ms: float, percentile: float = 99.0, confidence: float = 0.99
) -> SloVerdict:
    """Check "p{percentile} <= bound_ms"; failed requests count as overshoots (they never met it)."""
    overshoots = count_above(hist, round(bound_ms * 1000)) + errors
    n = hist.get_total_count() + errors
    return SloVerdict(
        percentile=percentile,
        bound_ms=bound_ms,
        met=early_stopping_passes(n, overshoots, percentile, confidence),
        overshoots=overshoots,
        requests=n,
        required_requests=required_requests(overshoots, percentile, confidence),
        confidence=confidence,
    )
