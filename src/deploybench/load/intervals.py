"""Confidence intervals for a point's throughput and p99: a block bootstrap over its time slices.

Requests are not independent (a slow reply queues the next ones), so resampling single latencies
would understate the noise. The blocks are the point's slices (the workers' ticks, ~0.1-0.25 s):
each resample draws as many slices as the point has, with replacement, adds their raw histogram
counts and their replies and durations, and reads the throughput and the p99 from the sum. The
interval is the central `confidence` share of those resamples (percentile bootstrap), widened to
include the point's own figure when a small sample puts it outside.

The products go through numpy's own loops (einsum), not BLAS: OpenBLAS's worker threads spin for a
while after every call, and on a 2-core machine that spinning is taken from the server under test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

from deploybench.load.stats import Sparse, bucket_values, counts_of
from deploybench.results import Interval

RESAMPLES = 1000
CONFIDENCE = 0.95
TAIL_SHARE = 5  # a resampled p99 is looked for above the point's p95 (5 x the 1% tail)


@dataclass
class Block:
    """One slice of time: its duration, its successful replies, its latencies (sparse bucket counts)."""

    duration_s: float
    ok: int
    latency: Sparse

    @classmethod
    def from_histogram(cls, duration_s: float, ok: int, hist: HdrHistogram) -> Block:
        counts = counts_of(hist)
        index = np.flatnonzero(counts)
        return cls(duration_s, ok, (index.astype(np.int32), counts[index]))


def _product(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """weights @ values without BLAS (see the module docstring)."""
    return np.einsum("bk,k...->b...", weights, values, optimize=False)


def _percentile_of_rows(matrix: np.ndarray, values: np.ndarray, percentile: float) -> np.ndarray:
    """Per row of bucket counts: the value at `percentile` (HdrHistogram's rank rule)."""
    cumulative = np.cumsum(matrix, axis=1)
    totals = cumulative[:, -1]
    ranks = np.maximum(np.floor(percentile / 100.0 * totals + 0.5), 1.0)
    slots = (cumulative < ranks[:, None]).sum(axis=1)
    return values[np.minimum(slots, len(values) - 1)]


def _interval(samples: np.ndarray, estimate: float, confidence: float, method: str) -> Interval:
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(
        low=float(min(low, estimate)), high=float(max(high, estimate)), confidence=confidence, method=method
    )


def bootstrap_intervals(
    blocks: Sequence[Block],
    percentile: float = 99.0,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[Interval | None, Interval | None]:
    """(throughput interval in req/s, p{percentile} interval in ms); None where it cannot be told."""
    blocks = [b for b in blocks if b.duration_s > 0]
    if len(blocks) < 2:
        return None, None
    columns = np.unique(np.concatenate([b.latency[0] for b in blocks]))
    matrix = np.zeros((len(blocks), len(columns)))
    for row, block in enumerate(blocks):
        matrix[row, np.searchsorted(columns, block.latency[0])] = block.latency[1]
    weights = (
        np.random.default_rng(seed)
        .multinomial(len(blocks), [1.0 / len(blocks)] * len(blocks), size=resamples)
        .astype(np.float64)
    )
    ok = np.array([b.ok for b in blocks], dtype=np.float64)
    duration = np.array([b.duration_s for b in blocks])
    mean_slice = float(duration.mean())
    method = (
        f"{confidence:.0%} block bootstrap over {len(blocks)} time slices of ~{mean_slice:.2f} s "
        f"({resamples} resamples of raw counts)"
    )
    throughput = _interval(
        _product(weights, ok) / _product(weights, duration),
        float(ok.sum() / duration.sum()),
        confidence,
        method,
    )
    if not len(columns):
        return throughput, None
    values = bucket_values()[1][columns] / 1000.0
    estimate = float(_percentile_of_rows(matrix.sum(axis=0, keepdims=True), values, percentile)[0])
    samples = _resampled_percentiles(weights, matrix, values, percentile)
    return throughput, _interval(samples, estimate, confidence, method)


def _resampled_percentiles(
    weights: np.ndarray, matrix: np.ndarray, values: np.ndarray, percentile: float
) -> np.ndarray:
    """The percentile of every resample, adding up only the top columns where it can lie.

    A resample's p99 sits far above the point's p95 unless the resample is wildly off; those rare
    resamples are computed in full. This keeps the work to a few dozen columns, not thousands.
    """
    overall = np.cumsum(matrix.sum(axis=0))
    cut = int(np.searchsorted(overall, (1 - TAIL_SHARE * (1 - percentile / 100)) * overall[-1]))
    totals = _product(weights, matrix.sum(axis=1))
    tail = _product(weights, matrix[:, cut:])
    below = totals - tail.sum(axis=1)
    ranks = np.maximum(np.floor(percentile / 100.0 * totals + 0.5), 1.0)
    slots = ((below[:, None] + np.cumsum(tail, axis=1)) < ranks[:, None]).sum(axis=1)
    result = values[cut + np.minimum(slots, tail.shape[1] - 1)]
    lower = below >= ranks
    if lower.any():
        result[lower] = _percentile_of_rows(_product(weights[lower], matrix), values, percentile)
    return result[totals > 0]
