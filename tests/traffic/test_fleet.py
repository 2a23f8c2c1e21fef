"""The fleet per hour: covers the traffic at every hour, keeps spares for the scale-out lag, and a
steeper ramp or a longer lag costs instances."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deploybench.traffic.fleet import FleetSettings, lag_utilisation, plan_fleet, traffic_curve
from deploybench.traffic.profile import TrafficProfile

DAY = [20.0] * 6 + [50, 100, 200, 300, 300, 250, 200, 150, 120, 100, 90, 80, 70, 60, 40, 30, 20, 20]


def _profile(rates: list[float]) -> TrafficProfile:
    return TrafficProfile(source="test", kind="hourly", step_s=3600, rates=rates)


def test_the_curve_passes_each_hour_at_its_middle_and_ramps_between():
    curve = traffic_curve(_profile(DAY), step_s=60)
    assert curve[30] == pytest.approx(20)  # 00:30, hour 0's middle
    assert curve[9 * 60 + 30] == pytest.approx(300)
    assert curve[8 * 60 + 60] == pytest.approx(250)  # 09:00: halfway from 200 to 300
    assert curve[-1] < 21  # 23:59 ramps into 00:00 of the next day, the same 20


def test_instances_cover_the_traffic_at_every_hour_at_the_target_rate():
    plan = plan_fleet(_profile(DAY), max_rps=15.0, lag_s=300, settings=FleetSettings())
    assert len(plan.instances_per_hour) == 24
    for rate, count in zip(_profile(DAY).hourly_rates, plan.instances_per_hour, strict=True):
        assert count * plan.target_rps_per_instance >= rate
    assert plan.fixed_instances == math.ceil(300 / 15)
    assert max(plan.instances_per_hour) >= plan.fixed_instances  # autoscaling pays its lag margin


def test_warm_instances_absorb_the_rise_during_the_lag():
    """At any moment the fleet sized for the traffic then, at the target, takes the highest traffic of
    the next lag seconds without any instance passing max_rps."""
    settings = FleetSettings()
    lag = 600.0
    plan = plan_fleet(_profile(DAY), max_rps=15.0, lag_s=lag, settings=settings)
    curve = traffic_curve(_profile(DAY), step_s=10)
    ahead = np.array([curve[np.arange(i, i + 61) % len(curve)].max() for i in range(len(curve))])
    fleet = np.maximum(settings.min_instances, np.ceil(curve / plan.target_rps_per_instance - 1e-9))
    assert (ahead / fleet <= 15.0 + 1e-9).all()


def test_a_longer_lag_lowers_the_target_and_a_flat_day_needs_no_margin():
    short = plan_fleet(_profile(DAY), 15.0, 60, FleetSettings())
    long = plan_fleet(_profile(DAY), 15.0, 900, FleetSettings())
    assert long.lag_utilisation < short.lag_utilisation < 1
    assert sum(long.instances_per_hour) >= sum(short.instances_per_hour)
    flat = plan_fleet(_profile([100.0] * 24), 15.0, 900, FleetSettings())
    assert flat.lag_utilisation == 1.0
    assert flat.instances_per_hour == [7] * 24


def test_the_minimum_fleet_holds_at_night_and_covers_rises_below_it():
    plan = plan_fleet(_profile(DAY), 15.0, 300, FleetSettings(min_instances=3))
    assert min(plan.instances_per_hour) == 3
    assert lag_utilisation(np.array([1.0, 2.0, 1.0]), 10, 10, covered_rps=5.0) == 1.0


def test_a_rate_per_instance_must_be_positive():
    with pytest.raises(ValueError, match="> 0"):
        plan_fleet(_profile(DAY), 0.0, 60, FleetSettings())
