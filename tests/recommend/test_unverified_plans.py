"""A plan whose rate no open-loop verdict verified (issue 26): its closed-loop rate is capped where the
queueing model predicts the bound, it says so and what would verify it, verified plans rank before it,
and with no bound its bill claims to meet nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.report_factory import make_trial
from helpers.traffic_factory import open_point, searched_trial

from deploybench.config import Constraints
from deploybench.load.sweeps import CONFIRM_STEP_DOWN
from deploybench.recommend.bill import BILL_OBJECTIVE
from deploybench.recommend.rank import recommend
from deploybench.recommend.rate import service_times
from deploybench.report.markdown import traffic_section
from deploybench.report.traffic import capacity_entries
from deploybench.traffic.profile import TrafficProfile
from deploybench.traffic.queueing import predicted_p99_ms

BOUND = 100.0
DAY = [20.0] * 6 + [50, 100, 200, 300, 300, 250, 200, 150, 120, 100, 90, 80, 70, 60, 40, 30, 20, 20]
PROFILE = TrafficProfile(source="day.csv", kind="hourly", step_s=3600, rates=DAY)


def _closed_only(capacity_rps: float = 60.0):
    return make_trial("openvino", capacity_rps=capacity_rps)


def test_a_closed_loop_only_trial_gets_a_predicted_rate_well_below_its_closed_loop_throughput():
    trial = _closed_only()
    rec = recommend([trial], Constraints(p99_ms=BOUND), traffic=PROFILE)
    plan, ev = rec.winner.traffic_plan, rec.winner
    assert plan.rate_source == "queueing prediction" and not plan.verified
    assert plan.basis.startswith("PREDICTED, not measured")
    assert plan.prediction.closed_loop_rps == ev.throughput_rps
    assert plan.rate_per_instance < 0.75 * ev.throughput_rps  # 29 req/s, not the closed loop's 44
    one_client = trial.points[0]
    assert plan.prediction.service_concurrency == one_client.concurrency == 1
    saturated = max(p.throughput_rps for p in trial.points)
    assert plan.prediction.servers == math.floor(saturated * one_client.latency.mean_ms / 1000) == 2


def test_the_cap_is_where_the_queueing_simulation_crosses_the_bound():
    trial = _closed_only()
    plan = recommend([trial], Constraints(p99_ms=BOUND), traffic=PROFILE).winner.traffic_plan
    service, _ = service_times(trial)
    found = plan.rate_interval[0]
    at = predicted_p99_ms(found, service)
    assert at == plan.prediction.predicted_p99_ms <= BOUND
    assert predicted_p99_ms(found * 1.01, service) > BOUND
    assert plan.rate_per_instance == pytest.approx(found * plan.drift_utilisation)  # the drift margin
    # the fleet is simulated with the model's latencies, not the closed loop's (which never queue)
    assert any("queueing model's latencies" in n for n in plan.notes)
    assert plan.simulated_p99_ms is not None and plan.simulated_p99_ms <= BOUND


def test_a_verified_candidate_ranks_before_a_cheaper_predicted_one():
    verified = searched_trial("eager", 40, BOUND, (5.0, 10.0, 7.5, 8.75))
    predicted = make_trial("openvino-int8", capacity_rps=200)
    rec = recommend([predicted, verified], Constraints(p99_ms=BOUND), traffic=PROFILE)
    first, second = (ev.traffic_plan for ev in rec.evaluations[:2])
    assert rec.objective_used == BILL_OBJECTIVE
    assert first.verified and not second.verified
    assert second.monthly_usd_autoscaled < first.monthly_usd_autoscaled  # cheaper, yet ranked after
    assert "of the 1 whose rate an open-loop verdict verified" in rec.winner.reason
    reason = rec.evaluations[1].reason
    assert "predicted, not measured" in reason and "verify: deploybench check-plan" in reason
    assert "verified open-loop rate first" in rec.comparison


def test_each_plan_says_in_json_and_summary_which_basis_its_rate_has_and_how_to_verify_it():
    verified = searched_trial("eager", 40, BOUND, (5.0, 10.0, 7.5, 8.75))
    rec = recommend([_closed_only(), verified], Constraints(p99_ms=BOUND), traffic=PROFILE)
    entries = {e["candidate"]["label"]: e for e in capacity_entries(rec)}
    predicted = entries["openvino fp32 w1t2"]
    assert predicted["verified"] is False and predicted["rate_source"] == "queueing prediction"
    assert predicted["verify_with"] == [
        f"deploybench check-plan STUDY --traffic day.csv --p99-ms 100 --candidate {_closed_only().trial_id}",
        "deploybench run STUDY.yaml --p99-ms 100 --traffic day.csv",
    ]
    assert predicted["prediction"]["predicted_rps"] == predicted["rate_interval"][0]
    hours = len(predicted["instances_per_hour"])
    bill = sum(predicted["instances_per_hour"]) * predicted["usd_per_hour"] * 730 / hours
    assert predicted["monthly_usd_autoscaled"] == bill  # the bills still recompute from the JSON
    assert entries["eager fp32 w1t2"]["verified"] is True
    assert entries["eager fp32 w1t2"]["rate_source"] == "open-loop verdict"
    summary = "\n".join(traffic_section(rec))
    assert "† not verified by an open-loop verdict:" in summary
    assert "- openvino fp32 w1t2: its rate" in summary and "predicted, not measured" in summary


def test_without_a_bound_the_bill_is_presented_as_meeting_no_latency_target():
    trial = _closed_only()
    rec = recommend([trial], Constraints(), traffic=PROFILE)
    plan = rec.winner.traffic_plan
    assert plan.rate_source == "no bound" and not plan.verified
    assert plan.rate_per_instance == trial.peak.throughput_rps
    assert "NO p99 BOUND" in rec.traffic_line and "meets no latency target" in rec.traffic_line
    assert plan.verify_with == ["deploybench report STUDY --traffic day.csv --p99-ms BOUND_MS"]
    assert "no p99 bound: its bill meets no latency target" in rec.winner.reason


def test_a_predicted_rate_above_a_measured_miss_is_cut_one_search_step_below_the_miss():
    """The search ran and every rate missed (the machine was slower then): the queueing model's rate
    (about 29 req/s) lies above the 20 req/s measured missing, and the plan may not stand on it."""
    closed = _closed_only()
    rng = np.random.default_rng(7)
    missed = open_point(20.0, 21.0, BOUND, rng)  # during the search the instance served only 21 req/s
    assert missed.slo.status == "missed"
    trial = closed.model_copy(update={"points": [*closed.points, missed]})
    plan = recommend([trial], Constraints(p99_ms=BOUND), traffic=PROFILE).winner.traffic_plan
    assert plan.rate_source == "queueing prediction" and not plan.verified
    assert plan.prediction.predicted_rps > 20.0  # the model alone would plan above the miss
    assert plan.rate_interval == (pytest.approx(20.0 * CONFIRM_STEP_DOWN), 20.0)
    assert plan.rate_per_instance < 20.0 * CONFIRM_STEP_DOWN
    assert "measured a miss at 20.0 req/s, so the rate is cut to 85% of it, 17.0 req/s" in plan.basis
