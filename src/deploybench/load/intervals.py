"""Confidence intervals for a point's throughput and p99, from batches long enough to be independent.

Requests are not independent: a slow reply holds its client, and the host drifts over seconds. A
time slice of a worker's tick (a fraction of a second, shorter than one reply at 16 clients) is no
independent unit either, so intervals are built from batches of consecutive slices of at least
BATCH_S seconds (batch means):

- throughput: the ratio estimate (replies / seconds) with the batch-means standard error of a ratio
  and a t quantile on k - 1 degrees of freedom;
- p99: the distribution-free order-statistic interval (the ranks between which the true p99 lies
  with 95% probability), computed for an effective number of requests: the count divided by the
  design effect the batches show (how much more the number of replies slower than the p99 varies
  from batch to batch than independent requests would make it vary). Where even that interval's
  upper rank would lie beyond the slowest request, there are too few requests for a p99 interval
  (about 460 independent ones at 95%, as MLPerf LoadGen's early stopping also finds) and none is
  given: a p99 bound is never claimed from a sample that cannot show it.

These intervals describe the point's own seconds. Points measured at different times also differ by
the host's drift; comparisons between them are paired (a runoff) or say they are not.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from hdrh.histogram import HdrHistogram

from deploybench.load.stats import Sparse, bucket_values, counts_of
from deploybench.results import Interval

CONFIDENCE = 0.95
BATCH_S = 2.0  # a batch spans many replies even at 16 clients on a slow backend
MIN_BATCHES = 3  # fewer cannot show their own spread


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


def _t_quantile(confidence: float, df: int) -> float:
    from scipy.stats import t  # lazy: scipy's import is a second every load command would pay

    return float(t.ppf(0.5 + confidence / 2, df))


def _z_quantile(confidence: float) -> float:
    return float(NormalDist().inv_cdf(0.5 + confidence / 2))


def batches_of(blocks: Sequence[Block], batch_s: float = BATCH_S) -> list[list[Block]]:
    """Consecutive blocks grouped into batches of at least `batch_s` seconds (a short remainder joins
    the last batch); a point too short for MIN_BATCHES such batches is split into MIN_BATCHES equal
    runs of blocks, which the method text then names."""
    groups: list[list[Block]] = [[]]
    for block in blocks:
        if sum(b.duration_s for b in groups[-1]) >= batch_s:
            groups.append([])
        groups[-1].append(block)
    if len(groups) > 1 and sum(b.duration_s for b in groups[-1]) < batch_s:
        remainder = groups.pop()
        groups[-1] += remainder
    if len(groups) >= MIN_BATCHES or len(blocks) < MIN_BATCHES:
        return groups
    edges = np.linspace(0, len(blocks), MIN_BATCHES + 1).round().astype(int)
    return [list(blocks[a:b]) for a, b in itertools.pairwise(edges)]


def _method(confidence: float, batches: list[list[Block]]) -> str:
    mean = sum(b.duration_s for batch in batches for b in batch) / len(batches)
    count = len(batches)
    return f"{confidence:.0%} batch means over {count} batches of ~{mean:.1f} s (t, {count - 1} df)"


def _throughput(ok: np.ndarray, duration: np.ndarray, confidence: float, method: str) -> Interval:
    """A ratio estimate's batch-means interval: residuals of each batch against the overall rate."""
    rate = float(ok.sum() / duration.sum())
    k = len(ok)
    residuals = ok - rate * duration
    se = math.sqrt(k / (k - 1) * float((residuals**2).sum())) / float(duration.sum())
    half = _t_quantile(confidence, k - 1) * se
    return Interval(low=max(0.0, rate - half), high=rate + half, confidence=confidence, method=method)


def _value_at_rank(cumulative: np.ndarray, values: np.ndarray, rank: int) -> float:
    """The latency of the rank-th fastest request (1-based), as HdrHistogram reports a bucket."""
    slot = int(np.searchsorted(cumulative, rank))
    return float(values[min(slot, len(values) - 1)])


def _design_effect(matrix: np.ndarray, cut: int) -> float:
    """How much more the count of requests slower than the p99 varies between batches than it would
    for independent requests (at least 1)."""
    totals = matrix.sum(axis=1)
    slow = matrix[:, cut + 1 :].sum(axis=1)
    share = slow.sum() / totals.sum()
    if share <= 0 or share >= 1:
        return 1.0
    k = len(totals)
    observed = k / (k - 1) * float(((slow - share * totals) ** 2).sum())
    return max(1.0, observed / float(totals.sum() * share * (1 - share)))


def _p99(
    matrix: np.ndarray, values: np.ndarray, percentile: float, confidence: float, method: str
) -> Interval | None:
    cumulative = np.cumsum(matrix.sum(axis=0))
    n = int(cumulative[-1])
    p = percentile / 100.0
    cut = int(np.searchsorted(cumulative, max(1.0, math.floor(p * n + 0.5))))
    n_eff = n / _design_effect(matrix, cut)
    half = _z_quantile(confidence) * math.sqrt(p * (1 - p) / n_eff)
    low_rank, high_rank = math.floor((p - half) * n), math.ceil((p + half) * n) + 1
    if high_rank > n or low_rank < 1:
        return None  # too few (effective) requests: the interval would reach past the slowest one
    low, high = _value_at_rank(cumulative, values, low_rank), _value_at_rank(cumulative, values, high_rank)
    method = f"{method}; order statistics at {n_eff:,.0f} effective of {n:,} requests"
    return Interval(low=low, high=high, confidence=confidence, method=method)


def point_intervals(
    blocks: Sequence[Block], percentile: float = 99.0, confidence: float = CONFIDENCE
) -> tuple[Interval | None, Interval | None]:
    """(throughput interval in req/s, p{percentile} interval in ms); None where it cannot be told."""
    blocks = [b for b in blocks if b.duration_s > 0]
    batches = batches_of(blocks)
    if len(batches) < MIN_BATCHES:
        return None, None
    method = _method(confidence, batches)
    ok = np.array([sum(b.ok for b in batch) for batch in batches], dtype=np.float64)
    duration = np.array([sum(b.duration_s for b in batch) for batch in batches])
    throughput = _throughput(ok, duration, confidence, method)
    columns = np.unique(np.concatenate([b.latency[0] for b in blocks]))
    if not len(columns):
        return throughput, None
    matrix = np.zeros((len(batches), len(columns)))
    for row, batch in enumerate(batches):
        for block in batch:
            np.add.at(matrix[row], np.searchsorted(columns, block.latency[0]), block.latency[1])
    values = bucket_values()[1][columns] / 1000.0
    return throughput, _p99(matrix, values, percentile, confidence, method)
