"""`deploybench report --traffic`: the summary line, "Your traffic" in report.html and summary.md, the
JSON `capacity` entries (bills recompute from them) and the autoscaling policy files."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.report_factory import write_study
from helpers.traffic_factory import searched_trial
from typer.testing import CliRunner

from deploybench.cli import app
from deploybench.report.traffic import write_candidate_policies

BOUND = 100.0
DAY = [20.0] * 6 + [50, 100, 200, 300, 300, 250, 200, 150, 120, 100, 90, 80, 70, 60, 40, 30, 20, 20]
runner = CliRunner()


def _run(*args: object):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def _study(tmp_path: Path) -> Path:
    trials = [
        searched_trial("openvino", 60, BOUND, (15.0, 30.0, 22.5, 26.25, 24.4)),
        searched_trial("eager", 40, BOUND, (5.0, 10.0, 7.5, 8.75)),
    ]
    return write_study(tmp_path / "study", trials)


def _traffic(tmp_path: Path) -> Path:
    path = tmp_path / "day.csv"
    path.write_text("hour,rps\n" + "".join(f"{h},{r}\n" for h, r in enumerate(DAY)), encoding="utf-8")
    return path


def test_report_with_traffic_writes_the_plan_everywhere(tmp_path: Path):
    study, out = _study(tmp_path), tmp_path / "report.json"
    result = _run("report", study, "--traffic", _traffic(tmp_path), "--p99-ms", BOUND, "--json", out)
    assert result.exit_code == 0, result.output
    output = result.output.replace("\n", "")
    assert (
        "Your traffic (" in output and "a month autoscaled" in output and "per 1M at this traffic" in output
    )

    data = json.loads(out.read_text())["recommendation"]
    assert data["objective_used"] == "monthly bill at your traffic"
    entries = data["capacity"]
    assert [e["candidate"]["backend"] for e in entries] == ["openvino", "eager"]
    for entry in entries:
        hourly = entry["instances_per_hour"]
        assert len(hourly) == 24
        assert all(n * entry["rate_per_instance"] >= r for n, r in zip(hourly, DAY, strict=True))
        price, month = entry["usd_per_hour"], entry["hours_per_month"]
        assert entry["monthly_usd_autoscaled"] == sum(hourly) * price * month / len(hourly)
        assert entry["monthly_usd_fixed"] == entry["fixed_instances"] * price * month
        per_1m = entry["monthly_usd_autoscaled"] / (entry["requests_per_month"] / 1e6)
        assert entry["usd_per_1m_at_traffic"] == per_1m
    assert "traffic_plan" not in data["winner"]  # once, under `capacity`

    summary = (study / "summary.md").read_text()
    assert (
        "## Your traffic" in summary and "Assumptions:" in summary and "Cold start 4.0 s: measured" in summary
    )
    html = (study / "report.html").read_text()
    assert 'id="traffic"' in html and "fig-fleet" in html
    policies = sorted(p.name for p in (study / "autoscaling").iterdir())
    assert policies == [
        "kserve-inferenceservice.yaml",
        "kubernetes-hpa.yaml",
        "policy-numbers.json",
        "ray-serve-autoscaling.yaml",
        "sagemaker-autoscaling.json",
    ]
    sagemaker = json.loads((study / "autoscaling" / "sagemaker-autoscaling.json").read_text())
    target = sagemaker["PutScalingPolicy"]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
    assert target == round(entries[0]["target_rps_per_instance"] * 60, 1)


def test_report_without_traffic_writes_no_traffic_section(tmp_path: Path):
    study, out = _study(tmp_path), tmp_path / "report.json"
    assert _run("report", study, "--p99-ms", BOUND, "--json", out).exit_code == 0
    data = json.loads(out.read_text())["recommendation"]
    assert data["capacity"] is None and data["traffic_line"] is None
    assert "## Your traffic" not in (study / "summary.md").read_text()
    assert not (study / "autoscaling").exists()


def test_a_malformed_traffic_file_is_refused_with_its_line(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("0,10\n1,-4\n", encoding="utf-8")
    for command in (["report", _study(tmp_path)], ["run"]):
        result = _run(*command, "--traffic", bad)
        assert result.exit_code == 2, result.output
        assert f"{bad}:2: negative rate -4 req/s" in result.output.replace("\n", "")


def test_the_autoscaler_reaction_time_is_a_flag_recorded_with_the_plan(tmp_path: Path):
    study, traffic = _study(tmp_path), _traffic(tmp_path)
    plans = {}
    for reaction in (0, 900):
        out = tmp_path / f"report-{reaction}.json"
        result = _run(
            "report", study, "--traffic", traffic, "--p99-ms", BOUND, "--reaction-s", reaction, "--json", out
        )
        assert result.exit_code == 0, result.output
        plans[reaction] = json.loads(out.read_text())["recommendation"]["capacity"][0]
        assert plans[reaction]["reaction_s"] == reaction and plans[reaction]["provision_s"] == 120
        assert f"Autoscaler reaction {reaction} s (assumed)" in (study / "summary.md").read_text()
        ray = (study / "autoscaling" / "ray-serve-autoscaling.yaml").read_text()
        assert f"upscale_delay_s: {reaction:.1f}" in ray
    slow, quick = plans[900], plans[0]
    assert slow["lag_s"] == quick["lag_s"] + 900  # a slower autoscaler: a longer lag to cover
    assert slow["lag_utilisation"] < quick["lag_utilisation"]
    assert sum(slow["instances_per_hour"]) > sum(quick["instances_per_hour"])


def test_any_planned_candidates_policies_can_be_written_beside_its_export(tmp_path: Path):
    study = _study(tmp_path)
    assert write_candidate_policies(study, tmp_path / "none", "anything") == []  # no report --traffic yet
    out = tmp_path / "report.json"
    assert (
        _run("report", study, "--traffic", _traffic(tmp_path), "--p99-ms", BOUND, "--json", out).exit_code
        == 0
    )
    entries = json.loads(out.read_text())["recommendation"]["capacity"]
    trials = {
        t["candidate"]["backend"]: t["trial_id"] for t in map(json.loads, (study / "trials.jsonl").open())
    }
    for entry in entries:  # the winner, and a runner-up export --trial-id might pick
        folder = tmp_path / "export" / entry["candidate"]["backend"] / "autoscaling"
        paths = write_candidate_policies(study, folder, trials[entry["candidate"]["backend"]])
        written = {p.name for p in (study / "autoscaling").iterdir()} - {"policy-numbers.json"}
        assert {p.name for p in paths} == written and len(paths) == 4
        sagemaker = json.loads((folder / "sagemaker-autoscaling.json").read_text())
        target = sagemaker["PutScalingPolicy"]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
        assert target == round(entry["target_rps_per_instance"] * 60, 1)
        assert sagemaker["RegisterScalableTarget"]["MaxCapacity"] == max(entry["instances_per_hour"])
    assert _run("report", study, "--p99-ms", BOUND).exit_code == 0  # planned no more: nothing stale is used
    assert write_candidate_policies(study, tmp_path / "stale", trials["openvino"]) == []
    assert not (study / "autoscaling").exists()
