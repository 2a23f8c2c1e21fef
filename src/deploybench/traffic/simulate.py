"""Check a fleet plan by simulation: arrivals from the traffic, a reactive autoscaler with its lag,
each instance answering as it was measured to at that rate.

A time-stepped simulation in one-second steps, not a per-request one: a day at 300 req/s is 26
million requests, and what decides the tail is how many arrive each second against how many
instances are warm. Each second: Poisson arrivals at the traffic's rate (seeded); the instances
ready then share them evenly (a load balancer); an instance at per-instance rate r answers with the
latency distribution measured at the lowest measured rate >= r (the conservative neighbour), and
requests at a rate above every measured one are counted late, since nothing measured vouches for
them. Beyond an instance's saturated capacity a backlog builds, delaying every request behind it
by backlog / capacity; past its queue limit requests are shed.

The autoscaler samples the rate every metric period; a need above the fleet that persists for the
reaction time starts instances, which serve `launch_s` later (provisioning plus cold start); a
lower need that persists for scale_in_s removes instances. An hour's p99 comes from the mixture of
the measured distributions its seconds used (weighted by their requests), never from an average of
percentiles.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from deploybench.config import StrictModel

QUANTILES = np.concatenate(
    [np.linspace(0, 0.9, 91), np.linspace(0.9, 0.999, 100)[1:], np.linspace(0.999, 1, 11)[1:]]
)
HOUR_S = 3600


@dataclass(frozen=True)
class ServiceCurve:
    """One instance as measured: latency quantiles (ms, at QUANTILES) at each per-instance rate."""

    rates: np.ndarray  # per-instance arrival rates measured, ascending
    quantiles_ms: np.ndarray  # (len(rates), len(QUANTILES)), each row non-decreasing
    capacity_rps: float  # the most one instance answers per second, saturated


@dataclass(frozen=True)
class Autoscaler:
    target_rps: float
    min_instances: int
    max_instances: int
    period_s: int
    reaction_s: float
    launch_s: float
    scale_in_s: float
    queue_per_instance: int


class SimulatedHour(StrictModel):
    """One hour of the simulated fleet."""

    hour: int
    requests: int
    p99_ms: float | None = Field(description="over the hour's answered requests; None: none answered")
    instances_max: int
    instances_mean: float
    late: int = Field(description="answered after the p99 bound, or at a rate nothing measured vouches for")
    shed: int = Field(description="refused: the backlog was past every instance's queue limit")


@dataclass
class _Trace:
    ready: np.ndarray
    wait_ms: np.ndarray
    shed: np.ndarray


class _Scaler:
    """Target tracking with its alarms: consecutive samples above (or below) the fleet decide."""

    def __init__(self, spec: Autoscaler, start: int) -> None:
        self.spec = spec
        self.ready = start
        self.pending: deque[tuple[int, int]] = deque()  # (second it serves from, instances)
        self.out_samples = max(1, math.ceil(spec.reaction_s / spec.period_s))
        self.in_samples = max(1, math.ceil(spec.scale_in_s / spec.period_s))
        self.history: deque[int] = deque(maxlen=max(self.out_samples, self.in_samples))

    def desired(self, observed_rps: float) -> int:
        need = math.ceil(observed_rps / self.spec.target_rps - 1e-9)
        return min(self.spec.max_instances, max(self.spec.min_instances, need))

    def tick(self, second: int) -> None:
        while self.pending and self.pending[0][0] <= second:
            self.ready += self.pending.popleft()[1]

    def sample(self, second: int, observed_rps: float) -> None:
        self.history.append(self.desired(observed_rps))
        recent = list(self.history)
        coming = self.ready + sum(n for _, n in self.pending)
        if len(recent) >= self.out_samples and min(recent[-self.out_samples :]) > coming:
            self.pending.append(
                (second + math.ceil(self.spec.launch_s), min(recent[-self.out_samples :]) - coming)
            )
        elif len(recent) >= self.in_samples and not self.pending:
            keep = max(recent[-self.in_samples :])
            self.ready = min(self.ready, keep)


def _run_fleet(arrivals: np.ndarray, service: ServiceCurve, spec: Autoscaler, start: int) -> _Trace:
    scaler = _Scaler(spec, start)
    counts = arrivals.tolist()
    ready, wait, shed = np.empty(len(counts), int), np.zeros(len(counts)), np.zeros(len(counts), int)
    backlog, window = 0.0, 0
    for second, count in enumerate(counts):
        scaler.tick(second)
        window += count
        if second and second % spec.period_s == 0:
            scaler.sample(second, window / spec.period_s)
            window = 0
        n = scaler.ready
        capacity = n * service.capacity_rps
        backlog = max(0.0, backlog + count - capacity)
        limit = n * spec.queue_per_instance
        if backlog > limit:
            shed[second] = int(backlog - limit)
            backlog = limit
        ready[second], wait[second] = n, 1000.0 * backlog / capacity
    return _Trace(ready, wait, shed)


def _mixture_p99(rows: np.ndarray, shifts: np.ndarray, weights: np.ndarray) -> float:
    """The 99th percentile of a mixture of distributions (quantile rows, each shifted, weighted)."""
    values = np.unique((rows + shifts[:, None]).ravel())
    cdf = np.zeros(len(values))
    for row, shift, weight in zip(rows, shifts, weights, strict=True):
        cdf += weight * np.interp(values, row + shift, QUANTILES, left=0.0, right=1.0)
    cdf /= weights.sum()
    return float(values[min(np.searchsorted(cdf, 0.99 - 1e-12), len(values) - 1)])


def _late(rows: np.ndarray, shifts: np.ndarray, weights: np.ndarray, bound_ms: float) -> float:
    within = [
        np.interp(bound_ms - s, r, QUANTILES, left=0.0, right=1.0) for r, s in zip(rows, shifts, strict=True)
    ]
    return float((weights * (1 - np.asarray(within))).sum())


def _hour(
    index: int, sl: slice, offered: np.ndarray, trace: _Trace, service: ServiceCurve, bound_ms: float
) -> SimulatedHour:
    """offered: (the traffic's rate, the Poisson arrivals) of every second."""
    rate, arrivals = offered
    answered = arrivals[sl] - trace.shed[sl]
    rho = rate[sl] / trace.ready[sl]
    beyond = rho > service.rates[-1]
    component = np.minimum(np.searchsorted(service.rates, rho, side="left"), len(service.rates) - 1)
    keys = component * 1_000_000 + np.rint(trace.wait_ms[sl]).astype(int)
    measured = answered * ~beyond
    unique, inverse = np.unique(keys, return_inverse=True)
    weights = np.bincount(inverse, weights=answered, minlength=len(unique))
    kept = weights > 0
    rows = service.quantiles_ms[unique[kept] // 1_000_000]
    shifts = (unique[kept] % 1_000_000).astype(float)
    p99 = _mixture_p99(rows, shifts, weights[kept]) if kept.any() else None
    measured_weights = np.bincount(inverse, weights=measured, minlength=len(unique))[kept]
    late = _late(rows, shifts, measured_weights, bound_ms) + float((answered * beyond).sum())
    return SimulatedHour(
        hour=index,
        requests=int(arrivals[sl].sum()),
        p99_ms=p99,
        instances_max=int(trace.ready[sl].max()),
        instances_mean=float(trace.ready[sl].mean()),
        late=round(late),
        shed=int(trace.shed[sl].sum()),
    )


def simulate_fleet(
    rate_per_second: np.ndarray, service: ServiceCurve, spec: Autoscaler, bound_ms: float, seed: int = 0
) -> list[SimulatedHour]:
    """Simulate the period second by second (rate_per_second: the traffic each second, whole hours)."""
    if len(rate_per_second) % HOUR_S:
        raise ValueError("the traffic must cover whole hours")
    rng = np.random.default_rng(seed)
    arrivals = rng.poisson(np.maximum(rate_per_second, 0.0))
    start = initial_fleet(float(rate_per_second[0]), spec)
    trace = _run_fleet(arrivals, service, spec, start)
    hours = len(arrivals) // HOUR_S
    offered = np.stack([rate_per_second, arrivals])
    return [
        _hour(h, slice(h * HOUR_S, (h + 1) * HOUR_S), offered, trace, service, bound_ms) for h in range(hours)
    ]


def initial_fleet(rate: float, spec: Autoscaler) -> int:
    """The fleet at the start: what the autoscaler settles on for the first second's traffic."""
    return min(spec.max_instances, max(spec.min_instances, math.ceil(rate / spec.target_rps - 1e-9)))
