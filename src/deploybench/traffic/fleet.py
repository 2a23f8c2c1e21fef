"""How many instances each hour: the traffic read as a curve, the autoscaler's lag covered by spare
warm capacity, a minimum fleet.

Rules, and why:
- A rate per hour (or minute) is the level at the middle of its step, changing linearly to the
  next step's: real traffic ramps, it does not jump on the hour. The period repeats (a day's last
  hour ramps into its first).
- A reactive autoscaler (target tracking) sizes the fleet for the traffic it has seen; new capacity
  serves only `lag` seconds later (its reaction, the instance's provisioning and the server's cold
  start). Until then the instances already warm take the rise, each up to `max_rps` (the highest
  per-instance rate that meets the p99 bound). So the target it tracks is
  `max_rps x lag_utilisation`, the utilisation being the lowest ratio, over the period, of the
  traffic now to the highest traffic within the next `lag` seconds, where that rise outgrows the
  minimum fleet. A steeper ramp or a longer cold start gives a lower target and more instances.
- Instances in an hour: the most the target calls for at any moment of that hour, at least the
  minimum fleet. A fixed fleet never scales, so it needs no lag margin: enough instances at
  `max_rps` for the period's peak.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from deploybench.config import StrictModel
from deploybench.traffic.profile import HOUR_S, TrafficProfile

PLAN_STEP_S = 10  # the curve's resolution when planning: fine against any lag worth planning for
CEIL_SLACK = 1e-9  # 2.0000000001 instances is 2: float noise must not buy an instance


class FleetSettings(StrictModel):
    """The autoscaler and the instances it starts: what the plan assumes beyond the measurements."""

    min_instances: int = Field(1, ge=1, le=10_000, description="instances kept however low the traffic")
    reaction_s: float = Field(
        180.0,
        ge=0,
        le=3600,
        description="assumed: from a rise to the autoscaler's decision (SageMaker target tracking's "
        "scale-out alarm waits for 3 one-minute datapoints)",
    )
    provision_s: float = Field(
        120.0,
        ge=0,
        le=3600,
        description="assumed: a new instance's boot and image pull before its server starts; not "
        "measurable on this machine",
    )
    cold_start_s: float | None = Field(
        None,
        ge=0,
        le=3600,
        description="server start to ready; None: each candidate's measured start-up, where recorded",
    )
    assumed_cold_start_s: float = Field(
        60.0, ge=0, le=3600, description="cold start used for a candidate whose start-up was not recorded"
    )
    scale_in_s: float = Field(
        600.0,
        ge=0,
        le=86_400,
        description="how long a lower need must last before instances are removed (scale-in cooldown)",
    )
    metric_period_s: float = Field(
        60.0, gt=0, le=3600, description="how often the autoscaler samples the rate"
    )
    queue_per_instance: int = Field(
        100,
        ge=1,
        description="requests an instance holds waiting before it sheds (the server's max_queue_size)",
    )


class FleetPlan(StrictModel):
    """The fleet over the period for one candidate: what the autoscaler tracks and the count per hour."""

    max_rps_per_instance: float = Field(description="the most one instance takes within the p99 bound")
    lag_s: float = Field(description="a rise to new capacity serving: reaction + provisioning + cold start")
    lag_utilisation: float = Field(
        description="the share of max_rps the traffic's steepest rise over the lag leaves"
    )
    target_rps_per_instance: float = Field(
        description="what the autoscaler tracks: max_rps x lag_utilisation"
    )
    instances_per_hour: list[int]
    fixed_instances: int = Field(description="a fleet that never scales, sized for the peak at max_rps")


def traffic_curve(profile: TrafficProfile, step_s: float = PLAN_STEP_S) -> np.ndarray:
    """Requests per second every step_s seconds over the period: linear between step middles, wrapping."""
    period = len(profile.rates) * profile.step_s
    rates = np.asarray(profile.rates, dtype=float)
    centres = (np.arange(len(rates)) + 0.5) * profile.step_s
    knots = np.concatenate([[centres[-1] - period], centres, [centres[0] + period]])
    values = np.concatenate([[rates[-1]], rates, [rates[0]]])
    times = np.arange(0, period, step_s, dtype=float)
    return np.interp(times, knots, values)


def ahead_max(curve: np.ndarray, samples: int) -> np.ndarray:
    """The highest value within the next `samples` samples (itself included), the period wrapping."""
    if samples <= 0:
        return curve.copy()
    extended = np.concatenate([curve, curve[: min(samples, len(curve))]])
    while len(extended) < len(curve) + samples:  # a lag longer than the period
        extended = np.concatenate([extended, curve])
    windows = np.lib.stride_tricks.sliding_window_view(extended, samples + 1)
    return windows[: len(curve)].max(axis=1)


def lag_utilisation(curve: np.ndarray, step_s: float, lag_s: float, covered_rps: float) -> float:
    """Lowest ratio of the traffic now to the highest within the lag, where that highest is more than
    the minimum fleet already covers (covered_rps); 1 when the traffic never outgrows it."""
    ahead = ahead_max(curve, math.ceil(lag_s / step_s))
    rising = ahead > covered_rps
    if not rising.any():
        return 1.0
    return float(min(1.0, np.min(curve[rising] / ahead[rising])))


def instances(rps: float, per_instance: float, minimum: int) -> int:
    return max(minimum, math.ceil(rps / per_instance - CEIL_SLACK))


def plan_fleet(profile: TrafficProfile, max_rps: float, lag_s: float, settings: FleetSettings) -> FleetPlan:
    """Instances per hour for this traffic at max_rps per instance, the lag covered by warm spares."""
    if max_rps <= 0:
        raise ValueError(f"the rate per instance must be > 0 req/s, got {max_rps}")
    curve = traffic_curve(profile)
    covered = settings.min_instances * max_rps
    utilisation = lag_utilisation(curve, PLAN_STEP_S, lag_s, covered)
    target = max_rps * utilisation
    per_hour = int(HOUR_S // PLAN_STEP_S)
    hourly_peaks = curve.reshape(-1, per_hour).max(axis=1)
    return FleetPlan(
        max_rps_per_instance=max_rps,
        lag_s=lag_s,
        lag_utilisation=utilisation,
        target_rps_per_instance=target,
        instances_per_hour=[instances(float(p), target, settings.min_instances) for p in hourly_peaks],
        fixed_instances=instances(float(curve.max()), max_rps, settings.min_instances),
    )
