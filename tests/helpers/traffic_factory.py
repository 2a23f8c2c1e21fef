"""Trials with an open-loop rate search, for the traffic plan's tests.

An instance is a single queue of capacity `capacity_rps`: at arrival rate r (load rho = r / capacity)
each latency is the service time plus an exponential wait of mean service x rho / (1 - rho), so p99
rises steeply towards capacity, as measured servers do. Latencies go through a real HdrHistogram and
each point carries the early-stopping verdict for the bound, exactly as the rate search records them.
"""

from __future__ import annotations

import zlib

import numpy as np

from deploybench.load import decode_histogram, slo_verdict
from deploybench.results import Interval, LoadPoint, TrialRecord
from helpers.report_factory import C5_XLARGE, histogram_stats, make_trial

METHOD = "test factory: +-noise"


def queue_latencies(rate: float, capacity_rps: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Milliseconds: service time plus a wait that grows as rho / (1 - rho); overload: ever longer."""
    service_ms = 1000 / capacity_rps
    rho = rate / capacity_rps
    if rho >= 1:
        return service_ms * (1 + np.linspace(0, 50 * rho, n))
    return service_ms * (1 + rng.exponential(rho / (1 - rho), n))


def open_point(
    rate: float,
    capacity_rps: float,
    bound_ms: float,
    rng: np.random.Generator,
    duration_s: float = 60.0,
    noise: float = 0.02,
    arrival: str | None = "poisson",
) -> LoadPoint:
    """An open-loop point at `rate` with its p99 verdict for bound_ms (Poisson: as the rate search)."""
    count = max(600, int(rate * duration_s))
    latencies = queue_latencies(rate, capacity_rps, count, rng)
    stats, encoded = histogram_stats(latencies)
    throughput = min(rate, capacity_rps)
    return LoadPoint(
        mode="open",
        target_rate=rate,
        arrival=arrival,
        duration_s=duration_s,
        ok=count,
        throughput_rps=throughput,
        latency=stats,
        stable=True,
        windows=3,
        histogram=encoded,
        slo=slo_verdict(decode_histogram(encoded), 0, bound_ms),
        throughput_ci=Interval(low=throughput * (1 - noise), high=throughput * (1 + noise), method=METHOD),
        p99_ci=Interval(low=stats.p99_ms * (1 - noise), high=stats.p99_ms * (1 + noise), method=METHOD),
    )


def searched_trial(
    backend: str,
    capacity_rps: float,
    bound_ms: float,
    rates: tuple[float, ...],
    *,
    startup_s: float | None = 4.0,
    noise: float = 0.02,
    machine=C5_XLARGE,
) -> TrialRecord:
    """A trial whose closed-loop sweep is followed by open-loop points at `rates` (the rate search)."""
    trial = make_trial(backend, capacity_rps=capacity_rps, machine=machine)
    rng = np.random.default_rng(zlib.crc32(f"{backend}:{capacity_rps}".encode()))
    opened = [open_point(r, capacity_rps, bound_ms, rng, noise=noise) for r in rates]
    met = [i for i, p in enumerate(opened) if p.slo and p.slo.status == "met"]
    best = max(met, key=lambda i: rates[i]) if met else None
    offset = len(trial.points)
    return trial.model_copy(
        update={
            "points": [*trial.points, *opened],
            "slo_rate_index": None if best is None else offset + best,
            "startup_s": startup_s,
        }
    )
