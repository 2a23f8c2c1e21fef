"""SLO claims as MLPerf LoadGen makes them: its early-stopping test, and its conservative estimate.

LoadGen (loadgen/early_stopping.cc) asks: if the true share of requests over the bound were
(100 - percentile)%, how likely is it to see this few overshoots in n requests? The claim
"p99 <= bound" holds when that probability is below 1 - confidence: P(X <= t) < 1 - c for
X ~ Binomial(n, 1 - p). 459 requests with none over the bound are the least for p99 at 99%.

Its percentile estimate (results.cc, SingleStream/MultiStream) reads the data the other way: t is
the largest overshoot count n requests still allow, and the t-th slowest latency is the highest
value the p-th percentile can be claimed under. We add the mirror test so a verdict can also say
"missed" (so many overshoots that the percentile is above the bound) instead of only "not met".
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

from deploybench.load.stats import count_above, counts_of, value_at_ranks
from deploybench.results import SloVerdict


def early_stopping_passes(
    n: int, overshoots: int, percentile: float = 99.0, confidence: float = 0.99
) -> bool:
    """LoadGen's test (find_min_passing uses a strict `<`): may "p{percentile} <= bound" be claimed?"""
    if n <= overshoots:
        return False
    from scipy.stats import binom  # here: a second of import every CLI start (serve too) would pay

    return float(binom.cdf(overshoots, n, 1.0 - percentile / 100.0)) < 1.0 - confidence


def clearly_missed(n: int, overshoots: int, percentile: float = 99.0, confidence: float = 0.99) -> bool:
    """The mirror test: seeing this many overshoots at a true rate of (100 - p)% is that unlikely."""
    if overshoots <= 0:
        return False
    from scipy.stats import binom

    return float(binom.sf(overshoots - 1, n, 1.0 - percentile / 100.0)) < 1.0 - confidence


def required_requests(overshoots: int, percentile: float = 99.0, confidence: float = 0.99) -> int:
    """Fewest requests that let the claim pass with this many overshoots (459 for 0, 662 for 1 at p99)."""
    low, high = overshoots + 1, max(overshoots + 2, 64)
    while not early_stopping_passes(high, overshoots, percentile, confidence):
        low, high = high, high * 2
    while low < high:  # passing is monotone in n: bisect for the first passing n
        mid = (low + high) // 2
        if early_stopping_passes(mid, overshoots, percentile, confidence):
            high = mid
        else:
            low = mid + 1
    return low


def allowed_overshoots(n: int, percentile: float = 99.0, confidence: float = 0.99) -> int:
    """Largest overshoot count n requests still pass with (-1 when even none would not)."""
    if not early_stopping_passes(n, 0, percentile, confidence):
        return -1
    low, high = 0, n - 1  # passing is monotone (falling) in the overshoot count
    while low < high:
        mid = (low + high + 1) // 2
        if early_stopping_passes(n, mid, percentile, confidence):
            low = mid
        else:
            high = mid - 1
    return low


def early_stopping_estimate_ms(
    hist: HdrHistogram | object, errors: int, percentile: float = 99.0, confidence: float = 0.99
) -> float | None:
    """LoadGen's conservative percentile estimate: the t-th slowest of n requests, t the largest
    overshoot count n allows (t >= 1, so None below 662 requests at p99/99%). Failed requests
    count as slower than any reply; None too when one of them is the t-th slowest."""
    counts = counts_of(hist)  # type: ignore[arg-type]
    replies = int(counts.sum())
    t = allowed_overshoots(replies + errors, percentile, confidence)
    if t < 1 or t <= errors:
        return None
    rank = replies - (t - errors) + 1  # t-th slowest overall = (t - errors)-th slowest reply
    return value_at_ranks(counts, [rank])[0] / 1000.0


def slo_verdict(
    hist: HdrHistogram | object,
    errors: int,
    bound_ms: float,
    percentile: float = 99.0,
    confidence: float = 0.99,
) -> SloVerdict:
    """Check "p{percentile} <= bound_ms"; failed requests count as overshoots (they never met it)."""
    counts = counts_of(hist)  # type: ignore[arg-type]
    overshoots = count_above(counts, round(bound_ms * 1000)) + errors
    n = int(counts.sum()) + errors
    met = early_stopping_passes(n, overshoots, percentile, confidence)
    missed = not met and clearly_missed(n, overshoots, percentile, confidence)
    return SloVerdict(
        percentile=percentile,
        bound_ms=bound_ms,
        met=met,
        status="met" if met else ("missed" if missed else "undecided"),
        overshoots=overshoots,
        requests=n,
        required_requests=required_requests(overshoots, percentile, confidence),
        confidence=confidence,
    )
