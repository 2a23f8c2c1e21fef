"""Cost per 1M inferences, transactions per hour and capacity planning against hand-computed values."""

from __future__ import annotations

import math

import pytest

from deploybench.pricing.catalogue import (
    HOURS_PER_MONTH,
    cost_per_million,
    plan_capacity,
    transactions_per_hour,
)


@pytest.mark.parametrize(
    ("throughput", "usd_per_hour", "expected_cents", "exact"),
    [
        # The comparison the project grew from: CPU, T4 GPU and Inferentia instances.
        (11.45, 0.204, 495, 0.204 / 41_220 * 1e6),  # 11.45 x 3600 = 41,220 per hour -> $4.949
        (126.3, 0.7364, 162, 0.7364 / 454_680 * 1e6),  # -> $1.6196
        (304.3, 0.3286, 30, 0.3286 / 1_095_480 * 1e6),  # -> $0.29996
    ],
)
def test_cost_per_million_matches_the_published_figures(throughput, usd_per_hour, expected_cents, exact):
    cost = cost_per_million(usd_per_hour, throughput)
    assert cost == pytest.approx(exact, rel=1e-12)
    assert round(cost * 100) == expected_cents


def test_ratios_between_the_three_figures():
    cpu = cost_per_million(0.204, 11.45)
    gpu = cost_per_million(0.7364, 126.3)
    inferentia = cost_per_million(0.3286, 304.3)
    assert f"{gpu / inferentia:.1f}" == "5.4"
    assert f"{cpu / inferentia:.1f}" == "16.5"


def test_transactions_per_hour():
    assert transactions_per_hour(304.3) == pytest.approx(1_095_480)
    assert transactions_per_hour(0.5) == pytest.approx(1_800)


@pytest.mark.parametrize(("price", "throughput"), [(-0.1, 10.0), (0.2, 0.0), (0.2, -3.0)])
def test_cost_rejects_impossible_inputs(price, throughput):
    with pytest.raises(ValueError, match="must be"):
        cost_per_million(price, throughput)


def test_capacity_plan_with_headroom():
    # 126.3 req/s per instance kept at 80% -> 101.04 usable; 1000 / 101.04 = 9.897 -> 10 instances.
    plan = plan_capacity(1000, 126.3, 0.7364, headroom=0.2)
    assert plan.usable_rps_per_instance == pytest.approx(101.04)
    assert plan.instances == 10
    assert plan.hourly_usd == pytest.approx(7.364)
    assert plan.monthly_usd == pytest.approx(10 * 0.7364 * 730)
    assert plan.hours_per_month == HOURS_PER_MONTH == 730


def test_capacity_plan_exact_multiple_does_not_round_up():
    assert plan_capacity(300, 100.0, 0.204).instances == 3
    assert plan_capacity(0.3 * 10, 0.3, 1.0).instances == 10  # 3.0000000000000004 / 0.3 in floats
    assert plan_capacity(301, 100.0, 0.204).instances == 4


def test_capacity_plan_without_price_still_counts_instances():
    plan = plan_capacity(50, 11.45, None)
    assert plan.instances == math.ceil(50 / 11.45) == 5
    assert plan.monthly_usd is None


@pytest.mark.parametrize(
    ("target", "throughput", "headroom"), [(0, 10, 0.0), (10, 0, 0.0), (10, 10, 1.0), (10, 10, -0.1)]
)
def test_capacity_plan_rejects_bad_inputs(target, throughput, headroom):
    with pytest.raises(ValueError):
        plan_capacity(target, throughput, 1.0, headroom)
