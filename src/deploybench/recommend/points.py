"""Which load points a judgement may stand on, and their verdict for a p99 bound: one rule for the
ranking (rank.py) and the fleet plan (capacity.py), so both trust the same points."""

from __future__ import annotations

from collections.abc import Sequence

from deploybench.load import decode_histogram, slo_verdict
from deploybench.results import LoadPoint, SloVerdict

MAX_ERROR_RATE = 0.01  # a point where more than 1% of requests failed is not an operating point


def usable(point: LoadPoint) -> bool:
    """Trusted (valid, stable, the client kept up), nearly error-free, and something was answered."""
    total = point.ok + point.error_count
    errors_ok = total > 0 and point.error_count / total <= MAX_ERROR_RATE
    return point.trusted and errors_ok and point.throughput_rps > 0


def usable_indices(points: Sequence[LoadPoint]) -> list[int]:
    return [i for i, p in enumerate(points) if usable(p)]


def verdict_for(point: LoadPoint, p99_ms: float) -> SloVerdict:
    """The point's early-stopping verdict for this p99 bound: recorded, else from its raw histogram."""
    if point.slo is not None and point.slo.bound_ms == p99_ms and point.slo.percentile == 99.0:
        return point.slo
    return slo_verdict(decode_histogram(point.histogram or ""), point.error_count, p99_ms)
