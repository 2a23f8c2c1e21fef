"""What open (Poisson) arrivals would do to one instance known only from closed-loop measurements:
an M/G/c queue, simulated request by request, and the highest arrival rate whose predicted p99
meets a bound. Predicted, not measured: a stand-in until an open-loop rate search measures it.

Rules, and why:
- The instance is c parallel servers with one FCFS queue (the server's own queue in front of its
  workers or batch slots); each request takes a service time drawn from a measured distribution
  (quantiles at simulate.QUANTILES, read by inverse CDF). A closed loop never queues more than its
  clients; Poisson arrivals queue behind every burst, which is what the model adds.
- Seeded common random numbers: every rate sees the same unit-rate gaps (scaled by 1 / rate) and
  the same service draws, so the predicted p99 never falls as the rate rises and the search for the
  highest rate meeting the bound is a plain bisection.
- The queue starts empty: the first WARMUP_SHARE of the requests are left out of the p99, so the
  prediction is of the steady state, not of a quiet start.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from deploybench.traffic.simulate import QUANTILES

REQUESTS = 30_000  # per predicted point: 300 requests beyond the p99 after the warm-up
WARMUP_SHARE = 0.05
SEED = 26
RELATIVE_STEP = 0.005  # the bisection stops when the bracket is within 0.5% of the rate


@dataclass(frozen=True)
class ServiceTimes:
    """One instance as the model sees it: service-time quantiles (ms at QUANTILES) and its servers."""

    quantiles_ms: np.ndarray
    servers: int

    @property
    def mean_ms(self) -> float:
        return float(np.trapezoid(self.quantiles_ms, QUANTILES))

    @property
    def capacity_rps(self) -> float:
        """The most the c servers answer per second: c / mean service time."""
        return 1000.0 * self.servers / self.mean_ms


def _draws(requests: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.exponential(1.0, requests)), rng.random(requests)


def _waits(arrivals_ms: np.ndarray, service_ms: np.ndarray, servers: int) -> np.ndarray:
    """Each request's wait in the FCFS queue before a server takes it."""
    if servers == 1:  # Lindley's recursion, vectorised: W_n = C_n - min(C_0..C_n)
        steps = np.concatenate([[0.0], service_ms[:-1] - np.diff(arrivals_ms)])
        total = np.cumsum(steps)
        return total - np.minimum.accumulate(np.minimum(total, 0.0))
    free = [0.0] * servers
    waits = np.empty(len(arrivals_ms))
    for i, (arrival, service) in enumerate(zip(arrivals_ms.tolist(), service_ms.tolist(), strict=True)):
        start = max(arrival, free[0])
        heapq.heapreplace(free, start + service)
        waits[i] = start - arrival
    return waits


def sojourn_ms(rate: float, service: ServiceTimes, requests: int = REQUESTS, seed: int = SEED) -> np.ndarray:
    """Latencies (wait + service, ms) of Poisson arrivals at `rate` req/s, warm-up left out."""
    if rate <= 0:
        raise ValueError(f"the arrival rate must be > 0 req/s, got {rate}")
    gaps, uniform = _draws(requests, seed)
    arrivals = gaps * 1000.0 / rate
    times = np.interp(uniform, QUANTILES, service.quantiles_ms)
    latencies = _waits(arrivals, times, service.servers) + times
    return latencies[int(requests * WARMUP_SHARE) :]


def predicted_p99_ms(rate: float, service: ServiceTimes, requests: int = REQUESTS, seed: int = SEED) -> float:
    return float(np.quantile(sojourn_ms(rate, service, requests, seed), 0.99))


def predicted_quantiles_ms(rate: float, service: ServiceTimes) -> np.ndarray:
    """The predicted latency distribution at `rate`, as quantiles at QUANTILES (a ServiceCurve row)."""
    return np.quantile(sojourn_ms(rate, service), QUANTILES)


def highest_rate(service: ServiceTimes, bound_ms: float, ceiling: float) -> tuple[float, float] | None:
    """(rate, predicted p99 there): the highest arrival rate up to `ceiling` whose predicted p99 meets
    bound_ms, to RELATIVE_STEP; None when even a trickle misses it (the service alone is too slow)."""
    top = min(ceiling, service.capacity_rps)
    low = top * RELATIVE_STEP
    if top <= 0 or predicted_p99_ms(low, service) > bound_ms:
        return None
    if predicted_p99_ms(top, service) <= bound_ms:
        return top, predicted_p99_ms(top, service)
    high = top
    while high - low > RELATIVE_STEP * low:
        middle = (low + high) / 2
        low, high = (middle, high) if predicted_p99_ms(middle, service) <= bound_ms else (low, middle)
    return low, predicted_p99_ms(low, service)
