"""The fleet plan per candidate: the rate one instance sustains by verdict, the bill that recomputes
from the plan's own figures, the ranking by that bill, and never an empty answer."""

from __future__ import annotations

import math

import pytest
from helpers.report_factory import make_trial
from helpers.traffic_factory import searched_trial

from deploybench.config import Constraints
from deploybench.recommend.capacity import EVEN_ARRIVALS_UTILISATION
from deploybench.recommend.rank import recommend
from deploybench.results import Interval
from deploybench.traffic.profile import TrafficProfile

BOUND = 100.0
DAY = [20.0] * 6 + [50, 100, 200, 300, 300, 250, 200, 150, 120, 100, 90, 80, 70, 60, 40, 30, 20, 20]
PROFILE = TrafficProfile(source="test day", kind="hourly", step_s=3600, rates=DAY)
# capacity 60 req/s: p99 meets 100 ms near 27 req/s (the factory's single queue)
RATES = (15.0, 30.0, 22.5, 26.25, 24.4)


def _fast():
    return searched_trial("openvino", 60, BOUND, RATES)


def test_the_rate_per_instance_is_the_highest_open_loop_rate_met_by_verdict():
    rec = recommend([_fast()], Constraints(p99_ms=BOUND), traffic=PROFILE)
    plan = rec.winner.traffic_plan
    opened = [p for p in _fast().points if p.mode == "open"]
    met = [p.target_rate for p in opened if p.slo.status == "met"]
    above = [p.target_rate for p in opened if p.target_rate > max(met)]
    assert plan.rate_interval == (max(met), min(above))
    margins = plan.curve_utilisation * plan.arrival_utilisation * plan.drift_utilisation
    assert plan.rate_per_instance == pytest.approx(max(met) * margins)
    assert plan.basis.startswith("open loop")
    assert plan.cold_start_s == 4.0 and plan.cold_start_source.startswith("measured")


def test_instances_cover_the_traffic_and_the_bills_recompute_from_the_plan():
    plan = recommend([_fast()], Constraints(p99_ms=BOUND), traffic=PROFILE).winner.traffic_plan
    for rate, count in zip(PROFILE.hourly_rates, plan.instances_per_hour, strict=True):
        assert count * plan.target_rps_per_instance >= rate
        assert count * plan.rate_per_instance >= rate
    hours = len(plan.instances_per_hour)
    assert plan.monthly_usd_autoscaled == sum(plan.instances_per_hour) * plan.usd_per_hour * 730 / hours
    assert plan.monthly_usd_fixed == plan.fixed_instances * plan.usd_per_hour * 730
    assert plan.requests_per_month == PROFILE.mean_rps * 3600 * 730
    assert plan.usd_per_1m_at_traffic == plan.monthly_usd_autoscaled / (plan.requests_per_month / 1e6)
    assert plan.fixed_instances == math.ceil(300 / plan.rate_per_instance)
    assert plan.monthly_usd_autoscaled < plan.monthly_usd_fixed  # a day with a night is cheaper autoscaled


def test_the_simulated_fleet_meets_the_bound_in_every_hour_ramps_included():
    plan = recommend([_fast()], Constraints(p99_ms=BOUND), traffic=PROFILE).winner.traffic_plan
    assert plan.simulation is not None and len(plan.simulation) == 24
    assert all(h.p99_ms is not None and h.p99_ms <= BOUND for h in plan.simulation)
    assert sum(h.shed for h in plan.simulation) == 0


def test_a_p99_interval_over_the_bound_at_that_rate_lowers_the_curve_utilisation():
    trial = _fast()
    best = max(
        (p for p in trial.points if p.mode == "open" and p.slo.status == "met"), key=lambda p: p.target_rate
    )
    wide = Interval(low=best.latency.p99_ms * 0.9, high=BOUND * 1.3, method="wide")
    points = [p.model_copy(update={"p99_ci": wide}) if p is best else p for p in trial.points]
    plan = recommend(
        [trial.model_copy(update={"points": points})], Constraints(p99_ms=BOUND), traffic=PROFILE
    ).winner.traffic_plan
    assert 0 < plan.curve_utilisation < 1
    assert "over the bound" in plan.notes[0]
    assert plan.target_utilisation == pytest.approx(
        plan.curve_utilisation * plan.drift_utilisation * plan.lag_utilisation
    )


def test_evenly_spaced_rate_search_points_are_planned_with_a_stated_margin():
    trial = _fast()
    even = [p.model_copy(update={"arrival": None}) if p.mode == "open" else p for p in trial.points]
    poisson_plan = recommend([trial], Constraints(p99_ms=BOUND), traffic=PROFILE).winner.traffic_plan
    plan = recommend(
        [trial.model_copy(update={"points": even})], Constraints(p99_ms=BOUND), traffic=PROFILE
    ).winner.traffic_plan
    assert poisson_plan.arrival_utilisation == 1.0
    assert plan.rate_interval == poisson_plan.rate_interval  # the measured rate, unchanged
    assert plan.arrival_utilisation == EVEN_ARRIVALS_UTILISATION < 1
    assert plan.rate_per_instance == pytest.approx(EVEN_ARRIVALS_UTILISATION * poisson_plan.rate_per_instance)
    assert plan.target_utilisation == pytest.approx(
        plan.curve_utilisation * EVEN_ARRIVALS_UTILISATION * plan.drift_utilisation * plan.lag_utilisation
    )
    assert plan.target_rps_per_instance < poisson_plan.target_rps_per_instance
    assert any("evenly spaced" in n and "Poisson" in n for n in plan.notes)
    assert "evenly spaced" in plan.basis


def test_flagged_rate_search_points_still_give_the_rate_by_their_verdict():
    # a shared host flags most rate-search points (unstable windows, late sends); their verdicts stand:
    # latency runs from the schedule, so lateness only adds to it (the rate search's own rule)
    trial = _fast()
    flags = ["unstable: 1 of the 3 windows stability needs", "client-bound: sends went out late"]
    flagged = [
        p.model_copy(update={"stable": False, "client_bound": True, "flags": flags})
        if p.mode == "open"
        else p
        for p in trial.points
    ]
    clean = recommend([trial], Constraints(p99_ms=BOUND), traffic=PROFILE).winner.traffic_plan
    plan = recommend(
        [trial.model_copy(update={"points": flagged})], Constraints(p99_ms=BOUND), traffic=PROFILE
    ).winner.traffic_plan
    assert plan.basis.startswith("open loop") and plan.rate_per_instance == clean.rate_per_instance
    assert plan.rate_interval == clean.rate_interval
    assert any("flagged" in n and "unstable" in n for n in plan.notes)


def test_without_open_loop_points_the_rate_is_predicted_and_says_so():
    # the cap itself, the ranking and the wording: tests/recommend/test_unverified_plans.py
    closed_only = make_trial("openvino", capacity_rps=60)
    plan = recommend([closed_only], Constraints(p99_ms=BOUND), traffic=PROFILE).winner.traffic_plan
    assert plan.basis.startswith("PREDICTED, not measured") and not plan.verified
    assert plan.rate_interval[1] is None
    assert plan.cold_start_source.startswith("assumed")
    assert any("queueing model's latencies" in n for n in plan.notes)


def test_a_plan_on_an_open_loop_verdict_is_verified_and_names_its_check():
    plan = recommend([_fast()], Constraints(p99_ms=BOUND), traffic=PROFILE).winner.traffic_plan
    assert plan.verified and plan.rate_source == "open-loop verdict" and plan.prediction is None
    assert plan.verify_with == [
        f"deploybench check-plan STUDY --traffic 'test day' --p99-ms 100 --candidate {_fast().trial_id}"
    ]


def test_with_traffic_the_ranking_follows_the_monthly_bill():
    slow, fast = searched_trial("eager", 40, BOUND, (5.0, 10.0, 7.5, 8.75)), _fast()
    rec = recommend([slow, fast], Constraints(p99_ms=BOUND), traffic=PROFILE)
    assert rec.objective_used == "monthly bill at your traffic"
    bills = [ev.traffic_plan.monthly_usd_autoscaled for ev in rec.evaluations if ev.eligible]
    assert bills == sorted(bills)
    assert rec.winner.reason.startswith("recommended: lowest monthly bill")
    assert "a month more than" in rec.evaluations[1].reason
    assert rec.traffic_line.startswith("Your traffic (test day, peak 300.0")


def test_a_bound_no_candidate_meets_names_the_closest_and_by_how_much():
    rec = recommend([_fast()], Constraints(p99_ms=5.0), traffic=PROFILE)
    assert rec.winner is None
    assert "closest: openvino fp32" in rec.traffic_line
    assert "% over the bound" in rec.traffic_line


def test_without_traffic_nothing_is_planned():
    rec = recommend([_fast()], Constraints(p99_ms=BOUND))
    assert rec.traffic is None and rec.traffic_line is None
    assert all(ev.traffic_plan is None for ev in rec.evaluations)
    assert rec.objective_used == "cost"
