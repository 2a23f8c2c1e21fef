"""The rate one instance sustains within the p99 bound, and how it was found: measured by the rate
search's open-loop verdict, or, without one, predicted by a queueing model from the candidate's own
closed-loop points (capacity.py's module rules state the order and why)."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from deploybench.config import StrictModel
from deploybench.load.stats import counts_of, value_at_percentiles
from deploybench.load.sweeps import CONFIRM_STEP_DOWN
from deploybench.recommend.points import verdict_for
from deploybench.results import LoadPoint, TrialRecord
from deploybench.traffic.profile import TrafficProfile
from deploybench.traffic.queueing import REQUESTS, SEED, ServiceTimes, highest_rate
from deploybench.traffic.simulate import QUANTILES

RateSource = Literal["open-loop verdict", "queueing prediction", "no bound"]
QUEUE_MODEL = (
    "M/G/c: Poisson arrivals, c parallel servers behind one FCFS queue, service times as measured at "
    "the lowest closed-loop concurrency (deploybench.traffic.queueing)"
)


class QueuePrediction(StrictModel):
    """The queueing model's cap on a rate no open-loop verdict verified: predicted, not measured."""

    model: str = QUEUE_MODEL
    service_concurrency: int = Field(description="the closed-loop point its service times come from")
    service_mean_ms: float = Field(description="mean service time (that point's latency: no queue there)")
    service_p99_ms: float
    servers: int = Field(
        description="requests served in parallel: floor(saturated throughput x mean service time), >= 1"
    )
    closed_loop_rps: float = Field(description="the closed-loop throughput the cap replaces")
    predicted_rps: float | None = Field(
        description="highest Poisson arrival rate whose predicted p99 meets the bound; None: none does"
    )
    predicted_p99_ms: float | None = Field(description="the model's p99 at predicted_rps")
    requests: int = REQUESTS
    seed: int = SEED


@dataclass(frozen=True)
class RateFinding:
    """What one instance sustains, how it was found, and the point it stands on."""

    rate: float
    high: float | None
    basis: str
    point: LoadPoint
    source: RateSource
    prediction: QueuePrediction | None = None

    @property
    def open_loop(self) -> bool:
        return self.source == "open-loop verdict"


VERDICT_ORDER = {"met": 0, "undecided": 1, "missed": 2}


def rate_runs(trial: TrialRecord) -> dict[float, list[LoadPoint]]:
    """The open-loop points (rate search) with an answer, grouped by arrival rate, ascending."""
    runs: dict[float, list[LoadPoint]] = {}
    points = [
        p for p in trial.points if p.mode == "open" and p.target_rate and p.ok and p.invalid_reason is None
    ]
    for point in sorted(points, key=lambda p: p.target_rate or 0.0):
        runs.setdefault(float(point.target_rate or 0.0), []).append(point)
    return runs


def _worst(runs: list[LoadPoint], p99_ms: float | None) -> LoadPoint:
    def badness(p: LoadPoint) -> tuple[int, float]:
        verdict = VERDICT_ORDER[verdict_for(p, p99_ms).status] if p99_ms is not None else 0
        return verdict, p.latency.p99_ms

    return max(runs, key=badness)


def open_points(trial: TrialRecord, p99_ms: float | None = None) -> list[LoadPoint]:
    """One open-loop point per arrival rate, ascending: where a rate was run more than once (the rate
    search's confirmations), its worst run (a verdict other than met first, then the highest p99),
    since a rate holds only if every run of it met the bound."""
    return [_worst(runs, p99_ms) for runs in rate_runs(trial).values()]


def _held_basis(runs: list[LoadPoint], p99_ms: float) -> str:
    spacing = "Poisson" if runs[0].arrival == "poisson" else "evenly spaced"
    p99s = [p.latency.p99_ms for p in runs]
    spread = f", p99 {min(p99s):.1f}-{max(p99s):.1f} ms" if len(runs) > 1 else ""
    return (
        f"open loop: highest arrival rate whose p99 verdict met {p99_ms:g} ms in every run "
        f"({len(runs)} of {len(runs)}{spread}; the study's rate search, {spacing} arrivals)"
    )


def _open_finding(trial: TrialRecord, p99_ms: float) -> RateFinding | None:
    """The highest rate every run of which met the bound, below the lowest rate any run of which
    missed it: a miss at a lower rate says a higher rate's pass was the machine's luck of that run."""
    runs = rate_runs(trial)
    missed = [r for r, points in runs.items() if any(_status(p, p99_ms) == "missed" for p in points)]
    held = [r for r, points in runs.items() if _all_met(points, p99_ms) and r < min(missed, default=r + 1)]
    if not held:
        return None
    rate = max(held)
    best = _worst(runs[rate], p99_ms)
    above = [r for r in runs if r > rate]
    basis = _held_basis(runs[rate], p99_ms)
    return RateFinding(rate, min(above) if above else None, basis, best, "open-loop verdict")


def _status(point: LoadPoint, p99_ms: float) -> str:
    return verdict_for(point, p99_ms).status


def _all_met(points: list[LoadPoint], p99_ms: float) -> bool:
    return all(_status(p, p99_ms) == "met" for p in points)


def closed_points(trial: TrialRecord) -> list[LoadPoint]:
    """The closed-loop points with an answer, by concurrency."""
    points = [p for p in trial.points if p.mode != "open" and p.ok and p.invalid_reason is None]
    return sorted(points, key=lambda p: p.concurrency or 0)


def service_times(trial: TrialRecord) -> tuple[ServiceTimes, LoadPoint] | None:
    """The model's instance, from its own closed-loop points: service times as measured at the lowest
    concurrency (at 1 client nothing queues; higher, the queue inflates them: conservative), and
    servers = floor(saturated throughput x mean service time), the requests it overlaps."""
    points = closed_points(trial)
    if not points:
        return None
    lowest = points[0]
    if lowest.histogram:
        micros = value_at_percentiles(counts_of(lowest.histogram), list(QUANTILES * 100))
        row = np.asarray(micros, float) / 1000
        row = np.maximum.accumulate(row)
    else:  # no distribution recorded: every request takes the mean (M/D/c)
        row = np.full(len(QUANTILES), lowest.latency.mean_ms)
    saturated = max(p.throughput_rps for p in points)
    servers = max(1, math.floor(saturated * float(np.trapezoid(row, QUANTILES)) / 1000 + 1e-9))
    return ServiceTimes(row, servers), lowest


def queue_cap(trial: TrialRecord, point: LoadPoint, p99_ms: float) -> QueuePrediction | None:
    """The queueing model's highest rate meeting the bound, never above the closed-loop throughput."""
    found = service_times(trial)
    if found is None:
        return None
    service, lowest = found
    solved = highest_rate(service, p99_ms, point.throughput_rps)
    return QueuePrediction(
        service_concurrency=lowest.concurrency or 1,
        service_mean_ms=service.mean_ms,
        service_p99_ms=float(np.interp(0.99, QUANTILES, service.quantiles_ms)),
        servers=service.servers,
        closed_loop_rps=point.throughput_rps,
        predicted_rps=solved[0] if solved else None,
        predicted_p99_ms=solved[1] if solved else None,
    )


def _lowest_miss(trial: TrialRecord, p99_ms: float) -> float | None:
    points = open_points(trial, p99_ms)
    misses = [p.target_rate or 0.0 for p in points if verdict_for(p, p99_ms).status == "missed"]
    return min(misses) if misses else None


def _predicted_finding(trial: TrialRecord, point: LoadPoint, p99_ms: float) -> RateFinding | None:
    """The queueing model's rate, capped CONFIRM_STEP_DOWN below the lowest rate the rate search
    measured missing: a measured miss outranks any prediction, and below it the search's own rule
    (one step down) is the only evidence there is."""
    prediction = queue_cap(trial, point, p99_ms)
    if prediction is None or prediction.predicted_rps is None:
        return None
    basis = (
        f"PREDICTED, not measured: no open-loop point met p99 {p99_ms:g} ms (the study ran no rate "
        f"search, or none passed), so the closed-loop {point.throughput_rps:.1f} req/s at "
        f"{point.concurrency} clients is capped at {prediction.predicted_rps:.1f} req/s, where an "
        f"M/G/{prediction.servers} queue of its measured service times predicts p99 "
        f"{prediction.predicted_p99_ms:.1f} ms under Poisson arrivals"
    )
    high = _lowest_miss(trial, p99_ms)
    rate = prediction.predicted_rps
    if high is not None and rate > high * CONFIRM_STEP_DOWN:
        rate = high * CONFIRM_STEP_DOWN
        basis += (
            f"; the rate search measured a miss at {high:.1f} req/s, so the rate is cut to "
            f"{CONFIRM_STEP_DOWN:.0%} of it, {rate:.1f} req/s (the search's own step down)"
        )
    return RateFinding(rate, high, basis, point, "queueing prediction", prediction)


def find_rate(trial: TrialRecord, point: LoadPoint | None, p99_ms: float | None) -> RateFinding | None:
    """The open-loop verdict's rate, else the queueing model's cap (predicted), else with no bound
    the saturated peak (meeting nothing), else None."""
    if p99_ms is None:
        if point is None:
            return None
        basis = (
            "NO p99 BOUND given: the saturated closed-loop peak, where latency is unbounded; this fleet "
            "meets no latency target"
        )
        return RateFinding(point.throughput_rps, None, basis, point, "no bound")
    found = _open_finding(trial, p99_ms)
    if found is not None or point is None:
        return found
    return _predicted_finding(trial, point, p99_ms)


def traffic_argument(profile: TrafficProfile) -> str:
    """What `--traffic` took to give this profile: the constant rate, or the file."""
    return f"{profile.rates[0]:g}" if profile.kind == "constant" else shlex.quote(profile.source)


def verify_commands(
    trial_id: str, profile: TrafficProfile, p99_ms: float | None, verified: bool
) -> list[str]:
    """What would measure what the plan assumes: check-plan serves the candidate and offers it the
    planned rate under Poisson arrivals; a rerun with --p99-ms measures the rate search itself."""
    traffic = traffic_argument(profile)
    if p99_ms is None:
        return [f"deploybench report STUDY --traffic {traffic} --p99-ms BOUND_MS"]
    candidate = shlex.quote(trial_id)
    check = f"deploybench check-plan STUDY --traffic {traffic} --p99-ms {p99_ms:g} --candidate {candidate}"
    rerun = f"deploybench run STUDY.yaml --p99-ms {p99_ms:g} --traffic {traffic}"
    return [check] if verified else [check, rerun]
