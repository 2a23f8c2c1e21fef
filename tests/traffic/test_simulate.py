"""The second-by-second fleet simulation: seeded, fast, and able to show a plan failing."""

from __future__ import annotations

import time

import numpy as np

from deploybench.traffic.fleet import traffic_curve
from deploybench.traffic.profile import TrafficProfile
from deploybench.traffic.simulate import QUANTILES, Autoscaler, ServiceCurve, simulate_fleet

DAY = [20.0] * 6 + [50, 100, 200, 300, 300, 250, 200, 150, 120, 100, 90, 80, 70, 60, 40, 30, 20, 20]
BOUND_MS = 100.0


def _service() -> ServiceCurve:
    """Measured at 5, 10 and 15 req/s (p99 40, 60, 90 ms) and 20 req/s (p99 300 ms); saturates at 22."""
    p99s = np.array([40.0, 60.0, 90.0, 300.0])
    rows = np.outer(p99s / 0.99 ** (1 / 1), QUANTILES)  # uniform-ish latencies reaching p99 at q=0.99
    rows = np.maximum(rows, 1.0)
    return ServiceCurve(np.array([5.0, 10.0, 15.0, 20.0]), rows, capacity_rps=22.0)


def _scaler(target: float, launch_s: float = 120.0, maximum: int = 100) -> Autoscaler:
    return Autoscaler(
        target_rps=target,
        min_instances=1,
        max_instances=maximum,
        period_s=60,
        reaction_s=180,
        launch_s=launch_s,
        scale_in_s=600,
        queue_per_instance=100,
    )


def _curve() -> np.ndarray:
    return traffic_curve(TrafficProfile(source="t", kind="hourly", step_s=3600, rates=DAY), 1.0)


def test_a_plan_with_margin_meets_the_bound_every_hour_and_is_seeded():
    start = time.perf_counter()
    hours = simulate_fleet(_curve(), _service(), _scaler(target=12.0), BOUND_MS, seed=3)
    assert time.perf_counter() - start < 5  # a day at 300 req/s peak, second by second
    assert len(hours) == 24
    assert all(h.p99_ms is not None and h.p99_ms <= BOUND_MS for h in hours)
    assert sum(h.shed for h in hours) == 0
    assert max(h.instances_max for h in hours) >= 300 / 15
    again = simulate_fleet(_curve(), _service(), _scaler(target=12.0), BOUND_MS, seed=3)
    assert again == hours


def test_a_fleet_run_at_the_limit_with_a_slow_start_misses_the_bound_on_the_ramp():
    hours = simulate_fleet(_curve(), _service(), _scaler(target=15.0, launch_s=1800), BOUND_MS, seed=3)
    ramp = hours[7:10]
    assert any(h.p99_ms is not None and h.p99_ms > BOUND_MS for h in ramp)
    assert sum(h.late for h in ramp) > 0


def test_a_fleet_capped_below_the_peak_sheds():
    hours = simulate_fleet(_curve(), _service(), _scaler(target=12.0, maximum=5), BOUND_MS, seed=1)
    assert hours[9].shed > 0
    assert hours[9].instances_max == 5
    assert hours[0].shed == 0
