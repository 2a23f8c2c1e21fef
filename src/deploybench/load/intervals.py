"""Confidence intervals for a point's throughput and p99, from units of seconds, not of requests.

Requests are not independent: a slow reply holds its client, a batch answers several requests at
once, and the host drifts over seconds. A time slice (a worker's tick, a fraction of a second, shorter
than one reply at 16 clients) is no independent unit either, so:

- throughput: batch means over batches of at least BATCH_S seconds of consecutive slices, the ratio
  estimate (replies / seconds) with the standard error of a ratio and a t quantile on k - 1 degrees
  of freedom;
- p99: a circular moving-block bootstrap whose blocks are BATCH_S seconds of consecutive slices, so
  bursts of slow replies and the drift within a block stay whole in every resample. Below
  MIN_P99_REQUESTS requests no interval is given: even independent requests could not bound a p99
  at 95% (MLPerf LoadGen's early stopping needs 459 for the same reason), and a bootstrap of fewer
  cannot reach above the slowest one; the point's early-stopping estimate speaks instead.

Both describe the point's own seconds. Points measured at different times also differ by the host's
drift between them, which no run's own seconds show. Where this machine has a between-run record
(deploybench.load.noise, measured by `deploybench load --repeat N`), every interval adds it (widen):
each side's half-width becomes sqrt(within² + (q · rel_sd · estimate)²), q the t quantile on the
record's degrees of freedom (z once they are many). Independent errors add in variance, so the two
halves add in quadrature; the t quantile pays for a spread estimated from a few repeats. Without a
record the method text says the interval is within-run only, and comparisons between points taken at
different times are paired (a runoff) or say they are not. The products go through numpy's own loops
(einsum), not BLAS, whose spinning threads would take a core from the server under test.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

from deploybench.load.noise import MachineNoise, Spread
from deploybench.load.stats import Sparse, bucket_values, counts_of
from deploybench.results import Interval

CONFIDENCE = 0.95
BATCH_S = 2.0  # a batch spans many replies even at 16 clients on a slow backend
MIN_BATCHES = 3  # fewer cannot show their own spread
MIN_P99_REQUESTS = 460  # below, even independent requests cannot bound a p99 at 95% (LoadGen: 459)
RESAMPLES = 1000


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


def t_quantile(confidence: float, df: int) -> float:
    from scipy.stats import t  # lazy: scipy's import is a second every load command would pay

    return float(t.ppf(0.5 + confidence / 2, df))


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
    half = t_quantile(confidence, k - 1) * se
    return Interval(low=max(0.0, rate - half), high=rate + half, confidence=confidence, method=method)


def _percentile_of_rows(matrix: np.ndarray, values: np.ndarray, percentile: float) -> np.ndarray:
    """Per row of bucket counts: the value at `percentile` (HdrHistogram's rank rule)."""
    cumulative = np.cumsum(matrix, axis=1)
    ranks = np.maximum(np.floor(percentile / 100.0 * cumulative[:, -1] + 0.5), 1.0)
    slots = (cumulative < ranks[:, None]).sum(axis=1)
    return values[np.minimum(slots, len(values) - 1)]


def _block_length(blocks: Sequence[Block], batch_s: float) -> int:
    """Slices per bootstrap block: as many as make `batch_s` seconds, at most a third of the point."""
    mean = sum(b.duration_s for b in blocks) / len(blocks)
    return max(1, min(len(blocks) // MIN_BATCHES, math.ceil(batch_s / mean)))


def _p99(
    slices: np.ndarray, values: np.ndarray, length: int, percentile: float, confidence: float, seed: int
) -> np.ndarray:
    """A circular moving-block bootstrap of the percentile: each resample strings together blocks of
    `length` consecutive slices (seconds of traffic, so the bursts and the drift within them stay
    whole), as many as the point has slices."""
    count = len(slices)
    doubled = np.concatenate([slices, slices[: length - 1]])
    prefix = np.concatenate([np.zeros((1, slices.shape[1])), np.cumsum(doubled, axis=0)])
    block_sums = prefix[length : length + count] - prefix[:count]  # the block starting at each slice
    draws = math.ceil(count / length)
    starts = np.random.default_rng(seed).integers(0, count, size=(RESAMPLES, draws))
    weights = np.zeros((RESAMPLES, count))
    np.add.at(weights, (np.repeat(np.arange(RESAMPLES), draws), starts.ravel()), 1.0)
    resampled = np.einsum("rk,kc->rc", weights, block_sums, optimize=False)  # no BLAS threads
    return _percentile_of_rows(resampled, values, percentile)


WITHIN_ONLY = "within-run only: no between-run record on this machine (deploybench load --repeat)"
PRIOR_WORDS = (
    "not measured on this machine: a default for shared cloud hosts; deploybench load --repeat 5 measures it"
)


def widen(interval: Interval, estimate: float, spread: Spread | None, noise: MachineNoise | None) -> Interval:
    """The interval with this machine's between-run term: each side's half-width h becomes
    sqrt(h² + (q · rel_sd · estimate)²), q the t quantile on the record's degrees of freedom. A prior
    (spread.prior: no record of this figure here) widens alike but is not a measurement, so the
    interval does not carry between_run_rel_sd and never backs "beyond the noise". With no noise at
    all (or none for this figure) the interval is returned as it is, its method saying so."""
    if noise is None or spread is None:
        return interval.model_copy(update={"method": f"{interval.method}; {WITHIN_ONLY}"})
    term = t_quantile(interval.confidence, spread.df) * spread.rel_sd * estimate
    below = math.hypot(max(0.0, estimate - interval.low), term)
    above = math.hypot(max(0.0, interval.high - estimate), term)
    share = term / estimate if estimate > 0 else 0.0
    if spread.prior:  # wide enough to cover the next run, but not a measurement: no "beyond the noise"
        method = f"{interval.method} + between-run prior ±{share:.1%} ({PRIOR_WORDS})"
        return _widened(interval, estimate, below, above, method, None)
    method = (
        f"{interval.method} + between-run term ±{share:.1%} from {spread.repeats} repeats on this "
        f"machine ({noise.date})"
    )
    return _widened(interval, estimate, below, above, method, spread.rel_sd)


def _widened(
    interval: Interval, estimate: float, below: float, above: float, method: str, rel_sd: float | None
) -> Interval:
    return Interval(
        low=max(0.0, estimate - below),
        high=estimate + above,
        confidence=interval.confidence,
        method=method,
        between_run_rel_sd=rel_sd,
    )


def _p99_of(
    blocks: Sequence[Block], percentile: float, confidence: float, seed: int
) -> tuple[Interval, float] | None:
    """The percentile's bootstrap interval and its estimate; None below MIN_P99_REQUESTS requests
    (LoadGen's early-stopping estimate speaks instead)."""
    columns = np.unique(np.concatenate([b.latency[0] for b in blocks]))
    if not len(columns):
        return None
    slices = np.zeros((len(blocks), len(columns)))
    for row, block in enumerate(blocks):
        slices[row, np.searchsorted(columns, block.latency[0])] = block.latency[1]
    n = int(slices.sum())
    if n < MIN_P99_REQUESTS:
        return None
    values = bucket_values()[1][columns] / 1000.0
    length = _block_length(blocks, BATCH_S)
    samples = _p99(slices, values, length, percentile, confidence, seed)
    estimate = float(_percentile_of_rows(slices.sum(axis=0, keepdims=True), values, percentile)[0])
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    seconds = length * float(np.mean([b.duration_s for b in blocks]))
    method = (
        f"{confidence:.0%} moving-block bootstrap, blocks of ~{seconds:.1f} s over {n:,} requests "
        f"({RESAMPLES} resamples)"
    )
    interval = Interval(
        low=min(float(low), estimate), high=max(float(high), estimate), confidence=confidence, method=method
    )
    return interval, estimate


def point_intervals(
    blocks: Sequence[Block],
    percentile: float = 99.0,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    noise: MachineNoise | None = None,
) -> tuple[Interval | None, Interval | None]:
    """(throughput interval in req/s, p{percentile} interval in ms); None where it cannot be told.
    Each carries this machine's between-run term where `noise` has one (widen)."""
    blocks = [b for b in blocks if b.duration_s > 0]
    batches = batches_of(blocks)
    if len(batches) < MIN_BATCHES:
        return None, None
    ok = np.array([sum(b.ok for b in batch) for batch in batches], dtype=np.float64)
    duration = np.array([sum(b.duration_s for b in batch) for batch in batches])
    rate = float(ok.sum() / duration.sum())
    within = _throughput(ok, duration, confidence, _method(confidence, batches))
    throughput = widen(within, rate, noise.throughput if noise else None, noise)
    p99 = _p99_of(blocks, percentile, confidence, seed)
    if p99 is None:
        return throughput, None
    return throughput, widen(*p99, noise.p99 if noise else None, noise)
