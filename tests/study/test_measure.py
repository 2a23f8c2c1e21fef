"""The study's load plan against a real loopback server: SLO claims through verdicts, closed loop too."""

from __future__ import annotations

import threading

import pytest

from deploybench.config import Constraints
from deploybench.load.targets import HttpTarget
from deploybench.study.measure import MeasureResult, measure_candidate
from deploybench.study.spec import LoadPlan, StudyConfig

pytestmark = pytest.mark.slow


def _measure(url: str, concurrency: int, p99_ms: float, rate_search: bool) -> MeasureResult:
    plan = LoadPlan(
        concurrency_levels=[concurrency],
        include_concurrency=[],
        window_s=0.3,
        min_window_requests=5,
        max_windows=4,
        warmup_s=0.2,
        point_max_s=15.0,
        rate_search=rate_search,
    )
    config = StudyConfig(constraints=Constraints(p99_ms=p99_ms), load=plan)
    target = HttpTarget(url, [b"x" * 1000])  # measure_candidate takes the target its stack speaks
    return measure_candidate(target, config, threading.Event(), lambda _: None)


def test_closed_loop_points_of_an_slo_study_carry_a_reachable_verdict(server_url: str) -> None:
    result = _measure(f"{server_url}/sleep/10", 2, p99_ms=500.0, rate_search=False)
    point = result.points[0]
    assert point.slo is not None and point.slo.bound_ms == 500.0
    assert point.slo.requests >= 459 and point.slo.status == "met"
    assert point.client is not None and point.client.controller_cpu_pct is not None
    assert result.peak_index is None or result.points[result.peak_index].trusted


def test_the_rate_search_starts_from_the_measured_peak(server_url: str) -> None:
    # /serial/5: 200 req/s at most. Starting at 10 req/s a verdict would need 46 s per point.
    result = _measure(f"{server_url}/serial/5", 4, p99_ms=200.0, rate_search=True)
    rates = [p.target_rate for p in result.points if p.mode == "open"]
    peak = result.points[0].throughput_rps
    assert rates and rates[0] >= 0.4 * peak  # never the 10 req/s default
    assert result.slo_rate_index is not None
    found = result.points[result.slo_rate_index].target_rate
    runs = [p for p in result.points if p.mode == "open" and p.target_rate == found]
    assert len(runs) == 3 and all(p.slo.status == "met" for p in runs)  # found, then confirmed twice
    # Poisson arrivals, as LoadGen's Server scenario and real traffic: evenly spaced ones flatter p99
    assert {p.arrival for p in result.points if p.mode == "open"} == {"poisson"}
    assert {p.arrival for p in result.points if p.mode == "closed"} == {None}
