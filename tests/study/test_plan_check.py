"""`deploybench check-plan`: the plan's per-instance rate measured on a real server, and 20% above it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers.report_factory import write_study
from helpers.traffic_factory import searched_trial
from typer.testing import CliRunner

from deploybench.cli import app
from deploybench.config import Constraints
from deploybench.recommend.rank import recommend
from deploybench.study.plan_check import CheckPoint, judge
from deploybench.traffic.profile import TrafficProfile

runner = CliRunner()
LOOSE = 5000.0  # ms: every rate here meets it, so the outcome is decided by behaviour, not speed
RATES = (15.0, 30.0)  # the rate search's points: both met, none above missed


DAY = [20.0] * 6 + [50, 100, 200, 300, 300, 250, 200, 150, 120, 100, 90, 80, 70, 60, 40, 30, 20, 20]


def _plan(bound: float = 100.0, rates: tuple[float, ...] = (15.0, 30.0)):
    """A plan on a wide bracket: 15 req/s met, 30 missed (capacity 60, the factory's queue)."""
    trial = searched_trial("openvino", 60, bound, rates)
    profile = TrafficProfile(source="test day", kind="hourly", step_s=3600, rates=DAY)
    return recommend([trial], Constraints(p99_ms=bound), traffic=profile).winner.traffic_plan


def _point(name: str, rate: float, verdict: str, p99: float) -> CheckPoint:
    return CheckPoint(
        name=name,
        rate=rate,
        arrival="poisson",
        ok=600,
        throughput_rps=rate,
        p99_ms=p99,
        verdict=verdict,
    )


@pytest.mark.parametrize(
    ("verdicts", "outcome", "words"),
    [
        (("met", "missed"), "tight", "holds and is tight"),
        (("met", "met"), "margin", "stays under the study's limit"),
        (("missed", "missed"), "fails", "does not hold"),
        (("met", "undecided"), "undecided", "too few requests"),
    ],
)
def test_the_outcome_follows_the_two_verdicts(verdicts, outcome, words):
    plan = _plan()
    rate = plan.rate_per_instance
    points = [_point("planned", rate, verdicts[0], 80.0), _point("+20%", rate * 1.2, verdicts[1], 120.0)]
    got, summary = judge(plan, points, 0.2)
    assert got == outcome and words in summary
    assert f"{rate:.1f} req/s" in summary and "+20%" in summary


def test_a_margin_the_plan_does_not_explain_points_at_the_study_s_own_miss():
    plan = _plan(rates=(15.0, 30.0, 22.5, 26.25, 24.4))  # a narrow bracket: 24.4 met, 26.25 missed
    rate = plan.rate_per_instance
    points = [_point("planned", rate, "met", 40.0), _point("+30%", rate * 1.3, "met", 60.0)]
    assert rate * 1.3 > 26.25  # above the study's own miss, yet met here
    outcome, summary = judge(plan, points, 0.3)
    assert outcome == "margin" and "missed the bound at 26.2 req/s" in summary and "faster now" in summary


def test_a_margin_under_the_study_s_miss_is_the_plan_s_own_and_says_which():
    plan = _plan(rates=(15.0, 30.0, 22.5, 26.25, 24.4))
    rate = plan.rate_per_instance
    assert rate * 1.2 < 26.25  # the drift margin keeps +20% under the study's miss
    points = [_point("planned", rate, "met", 40.0), _point("+20%", rate * 1.2, "met", 60.0)]
    outcome, summary = judge(plan, points, 0.2)
    assert outcome == "margin" and "faster now" not in summary
    assert "24.4 req/s met the bound, the lowest miss was 26.2 req/s" in summary
    assert f"drift utilisation {plan.drift_utilisation:.0%}" in summary


def test_the_planned_rate_is_the_rate_found_times_the_instance_side_utilisations():
    plan = _plan()
    margins = plan.curve_utilisation * plan.arrival_utilisation * plan.drift_utilisation
    assert plan.rate_per_instance == pytest.approx(plan.rate_interval[0] * margins)
    assert plan.rate_per_instance < plan.rate_interval[0]  # the drift margin, always stated with a bound
    assert plan.rate_per_instance > plan.target_rps_per_instance  # the lag's margin is not the instance's


def _served_study(tmp_path: Path) -> Path:
    """A study folder of one eager candidate of a small real model, with a rate search behind it."""
    root = write_study(tmp_path / "study", [searched_trial("eager", 60, LOOSE, RATES)])
    config = yaml.safe_load((tmp_path / "study" / "study.yaml").read_text())
    config["model"] = {"source": "torchvision:mobilenet_v3_small", "weights": "random"}
    config["load"] = {"window_s": 0.5, "min_window_requests": 5, "max_windows": 3, "warmup_s": 0.2}
    (root / "study.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root


@pytest.mark.slow
def test_check_plan_serves_the_winner_and_measures_the_planned_rate_and_20_percent_above(tmp_path: Path):
    study, out = _served_study(tmp_path), tmp_path / "check.json"
    before = sorted(p.name for p in study.iterdir())
    args = ["check-plan", study, "--traffic", "100", "--p99-ms", LOOSE, "--cache-dir", tmp_path / "cache"]
    result = runner.invoke(app, [str(a) for a in [*args, "--json", out]], env={"COLUMNS": "200"})
    data = json.loads(out.read_text())
    check, plan = data["check"], data["plan"]
    assert result.exit_code == (1 if check["outcome"] == "fails" else 0), result.output
    assert plan["rate_interval"][0] == max(RATES)
    assert check["planned_rps"] == pytest.approx(plan["rate_per_instance"])
    assert plan["rate_per_instance"] < max(RATES)  # the drift margin
    planned, above = check["points"]
    assert (planned["name"], above["name"]) == ("planned", "+20%")
    rate = plan["rate_per_instance"]
    assert planned["rate"] == pytest.approx(rate) and above["rate"] == pytest.approx(1.2 * rate)
    for point in (planned, above):  # the served candidate answered, each point long enough for a verdict
        assert point["arrival"] == "poisson" and point["ok"] + sum(point["errors"].values()) >= 459
        assert point["ok"] > 0 and point["p99_ci"]["low"] <= point["p99_ms"] <= point["p99_ci"]["high"]
    # the outcome follows the verdicts (a host too busy to answer 36 req/s within 5 s fails the plan)
    assert check["outcome"] == judge_outcome(planned["verdict"], above["verdict"])
    if check["outcome"] == "margin":
        assert "no measured rate above it missed" in check["summary"]
    text = result.output.replace("\n", "")
    assert "Plan check on" in text and check["summary"][:40] in text
    assert sorted(p.name for p in study.iterdir()) == before  # the study folder is only read


def judge_outcome(at: str, above: str) -> str:
    if at == "missed":
        return "fails"
    if "undecided" in (at, above):
        return "undecided"
    return "tight" if above == "missed" else "margin"
