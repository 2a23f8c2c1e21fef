"""`deploybench check-plan`: the plan's per-instance rate measured on a real server, and 20% above it,
each run several times in turns."""

from __future__ import annotations

import functools
import json
import threading
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from helpers.report_factory import write_study
from helpers.traffic_factory import searched_trial
from typer.testing import CliRunner

from deploybench.cli import app
from deploybench.config import Constraints
from deploybench.recommend.rank import recommend
from deploybench.results import LatencyStats, LoadPoint, SloVerdict
from deploybench.study import plan_check
from deploybench.study.plan_check import CHECK_SEED, SEED_STRIDE, CheckPoint, judge, measure_rates, rate_runs
from deploybench.study.spec import StudyConfig
from deploybench.traffic.profile import TrafficProfile

runner = CliRunner()
LOOSE = 5000.0  # ms: every rate here meets it, so the outcome is decided by behaviour, not speed
RATES = (15.0, 30.0)  # the rate search's points: both met, none above missed
TURNS = [(name, run) for run in (1, 2, 3) for name in ("planned", "+20%")]  # three runs each, in turns


DAY = [20.0] * 6 + [50, 100, 200, 300, 300, 250, 200, 150, 120, 100, 90, 80, 70, 60, 40, 30, 20, 20]


@functools.cache  # a plan is read, never changed: made once per arguments
def _plan(bound: float = 100.0, rates: tuple[float, ...] = (15.0, 30.0)):
    """A plan on a wide bracket: 15 req/s met, 30 missed (capacity 60, the factory's queue)."""
    trial = searched_trial("openvino", 60, bound, rates)
    profile = TrafficProfile(source="test day", kind="hourly", step_s=3600, rates=DAY)
    return recommend([trial], Constraints(p99_ms=bound), traffic=profile).winner.traffic_plan


def _point(name: str, rate: float, verdict: str, p99: float, run: int = 1) -> CheckPoint:
    return CheckPoint(
        name=name,
        run=run,
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


def _runs(rate: float, over: float, planned: tuple[str, ...], above: tuple[str, ...]) -> list[CheckPoint]:
    """The check's points in the order measured: planned and +over in turns, run after run; the p99s
    grow with the run, so each rate's spread is known (planned 40, 50, 60 ms; above 100, 110, 120)."""
    points = []
    for run, (at, up) in enumerate(zip(planned, above, strict=True), start=1):
        points.append(_point("planned", rate, at, 30.0 + 10 * run, run))
        points.append(_point(f"+{over:.0%}", rate * (1 + over), up, 90.0 + 10 * run, run))
    return points


@pytest.mark.parametrize(
    ("planned", "above", "outcome", "words"),
    [
        (("met", "missed", "met"), ("met", "met", "met"), "fails", "does not hold"),  # one miss of three
        (("missed", "undecided", "met"), ("missed",) * 3, "fails", "does not hold"),  # a miss beats undecided
        (("met",) * 3, ("met", "missed", "met"), "tight", "holds and is tight"),  # +20% mixed
        (("met",) * 3, ("undecided", "missed", "undecided"), "tight", "holds and is tight"),
        (("met", "undecided", "met"), ("missed",) * 3, "undecided", "too few requests"),
        (("met",) * 3, ("undecided",) * 3, "undecided", "too few requests"),
        (("met",) * 3, ("met", "undecided", "met"), "margin", "stays under the study's limit"),
        (("met",) * 3, ("met",) * 3, "margin", "stays under the study's limit"),
    ],
)
def test_the_outcome_follows_every_run_of_both_rates(planned, above, outcome, words):
    plan = _plan()
    got, summary = judge(plan, _runs(plan.rate_per_instance, 0.2, planned, above), 0.2)
    assert got == outcome and words in summary


def test_the_summary_quotes_each_rate_s_runs_met_and_p99_range():
    plan = _plan()
    rate = plan.rate_per_instance
    outcome, summary = judge(plan, _runs(rate, 0.2, ("met",) * 3, ("met", "missed", "undecided")), 0.2)
    assert outcome == "tight"
    assert f"at the planned {rate:.1f} req/s: met in 3 of 3 runs, p99 40.0-60.0 ms; " in summary
    assert (
        f"at +20% ({rate * 1.2:.1f} req/s): met in 1 of 3 runs (1 undecided), p99 100.0-120.0 ms" in summary
    )


def test_each_rate_s_runs_are_counted_with_their_p99_spread():
    points = _runs(20.0, 0.2, ("met", "met", "undecided"), ("missed", "met", "missed"))
    planned, above = rate_runs(points)
    assert (planned.name, planned.rate, planned.runs) == ("planned", 20.0, 3)
    assert (planned.met, planned.missed, planned.undecided) == (2, 0, 1)
    assert (planned.p99_min_ms, planned.p99_max_ms) == (40.0, 60.0)
    assert (above.name, above.rate, above.runs) == ("+20%", pytest.approx(24.0), 3)
    assert (above.met, above.missed, above.undecided) == (1, 2, 0)
    assert (above.p99_min_ms, above.p99_max_ms) == (100.0, 120.0)


def _fake_load_generator(monkeypatch, verdicts: list[str]) -> list[tuple[float, int, str]]:
    """The load generator replaced: the i-th point offered (from 0) gets verdicts[i] and a p99 of
    10 x (i + 1) ms; returns what was offered, (rate, seed, arrival) per point, as it is offered."""
    offered = []

    def fake_run_points(target, cfg, *, rates, stop_event):
        verdict = verdicts[len(offered)]
        offered.append((rates[0], cfg.seed, cfg.arrival))
        slo = SloVerdict(
            bound_ms=100.0, met=verdict == "met", status=verdict, overshoots=0, requests=500,
            required_requests=459,
        )  # fmt: skip
        point = LoadPoint(
            mode="open", target_rate=rates[0], arrival="poisson", duration_s=30.0, ok=500,
            throughput_rps=rates[0], latency=LatencyStats(count=500, p99_ms=10.0 * len(offered)),
            stable=True, windows=3, slo=slo,
        )  # fmt: skip
        return SimpleNamespace(points=[point])

    monkeypatch.setattr(plan_check, "run_points", fake_run_points)
    return offered


def test_the_rates_take_turns_and_each_run_has_its_own_arrivals(monkeypatch):
    offered = _fake_load_generator(monkeypatch, ["met"] * 6)
    config = StudyConfig.model_validate({"model": {"source": "torchvision:mobilenet_v3_small"}})
    rates = [("planned", 10.0), ("+20%", 12.0)]
    points = measure_rates(None, config, rates, 100.0, threading.Event(), repeats=3)
    seeds = [CHECK_SEED + SEED_STRIDE * run for run in (0, 0, 1, 1, 2, 2)]
    assert offered == [(rate, seed, "poisson") for rate, seed in zip([10.0, 12.0] * 3, seeds, strict=True)]
    assert [(p.name, p.run) for p in points] == TURNS


@pytest.mark.parametrize(
    ("verdicts", "outcome", "exit_code"),
    [
        (["met", "met", "met", "missed", "met", "met"], "tight", 0),  # +20% missed once of three
        (["met", "met", "missed", "met", "met", "met"], "fails", 1),  # the planned rate missed once
    ],
)
def test_check_plan_repeats_each_rate_and_reports_every_run(
    tmp_path: Path, monkeypatch, verdicts, outcome, exit_code
):
    """The command end to end with the server and the load generator faked: three runs each."""
    offered = _fake_load_generator(monkeypatch, verdicts)
    monkeypatch.setattr(
        plan_check, "served", lambda *args: nullcontext(SimpleNamespace(target=lambda *a: None))
    )
    monkeypatch.setattr(plan_check, "warm_up", lambda *args: 0)
    study = write_study(tmp_path / "study", [searched_trial("eager", 60, LOOSE, RATES)])
    out = tmp_path / "check.json"
    args = ["check-plan", study, "--traffic", 100, "--p99-ms", LOOSE, "--repeat", 3, "--json", out]
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    check = json.loads(out.read_text())["check"]
    assert result.exit_code == exit_code and check["outcome"] == outcome, result.output
    assert len(offered) == 6 and check["repeats"] == 3
    assert [(p["name"], p["run"]) for p in check["points"]] == TURNS
    planned, above = ((r["p99_min_ms"], r["p99_max_ms"], r["met"], r["missed"]) for r in check["rates"])
    assert planned == ((10, 50, 2, 1) if outcome == "fails" else (10, 50, 3, 0))
    assert above == ((20, 60, 2, 1) if outcome == "tight" else (20, 60, 3, 0))
    text = result.output.replace("\n", "")
    assert "run" in text and "p99 20.0-60.0 ms" in text and "in 2 of 3 runs" in check["summary"]


def test_repeat_is_between_1_and_10(tmp_path: Path):
    study = write_study(tmp_path / "study", [searched_trial("eager", 60, LOOSE, RATES)])
    for repeat in ("0", "11"):
        args = ["check-plan", str(study), "--traffic", "100", "--p99-ms", "100", "--repeat", repeat]
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 2 and "Invalid value for '--repeat'" in result.output


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
    args += ["--repeat", 1]  # one run each keeps this test's time; the turns are tested without a server
    result = runner.invoke(app, [str(a) for a in [*args, "--json", out]], env={"COLUMNS": "200"})
    data = json.loads(out.read_text())
    check, plan = data["check"], data["plan"]
    assert result.exit_code == (1 if check["outcome"] == "fails" else 0), result.output
    assert plan["rate_interval"][0] == max(RATES)
    assert check["planned_rps"] == pytest.approx(plan["rate_per_instance"])
    assert plan["rate_per_instance"] < max(RATES)  # the drift margin
    planned, above = check["points"]
    assert (planned["name"], above["name"]) == ("planned", "+20%") and check["repeats"] == 1
    assert planned["run"] == above["run"] == 1
    for runs, point in zip(check["rates"], (planned, above), strict=True):
        assert (runs["name"], runs["runs"], runs[point["verdict"]]) == (point["name"], 1, 1)
        assert runs["p99_min_ms"] == runs["p99_max_ms"] == point["p99_ms"]
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
    assert "Plan check on" in text and check["summary"][:40] in text and "of 1 runs; p99" in text
    assert sorted(p.name for p in study.iterdir()) == before  # the study folder is only read


def judge_outcome(at: str, above: str) -> str:
    if at == "missed":
        return "fails"
    if "undecided" in (at, above):
        return "undecided"
    return "tight" if above == "missed" else "margin"
