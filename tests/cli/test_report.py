"""The report, compare, prices and cost commands, through the real Typer app, with --json."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.report_factory import make_trial, write_study
from typer.testing import CliRunner

from deploybench.cli import app
from deploybench.results import MachineInfo

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_cost_one_off_with_price_per_hour(tmp_path: Path):
    out = tmp_path / "cost.json"
    result = _run("cost", "--throughput", "304.3", "--price-per-hour", "0.3286", "--json", out)
    assert result.exit_code == 0, result.output
    assert "cost per 1M inferences: $0.30" in result.output
    assert "transactions per hour:  1,095,480" in result.output
    data = json.loads(out.read_text())
    assert round(data["cost_per_1m"], 2) == 0.30 and data["transactions_per_hour"] == 1_095_480


def test_cost_with_instance_and_capacity(tmp_path: Path):
    out = tmp_path / "cost.json"
    result = _run(
        "cost", "--throughput", "11.45", "--instance", "ml.c5.xlarge", "--target-rps", "100", "--json", out
    )
    assert result.exit_code == 0, result.output
    assert "$4.95" in result.output and "9 instance(s)" in result.output
    data = json.loads(out.read_text())
    assert data["usd_per_hour"] == 0.204 and data["capacity"]["instances"] == 9
    assert data["capacity"]["monthly_usd"] == 9 * 0.204 * 730


def test_cost_errors_are_one_line_with_suggestions():
    result = _run("cost", "--throughput", "10", "--instance", "ml.g4dn.xlarg")
    assert result.exit_code == 2
    assert "unknown instance 'ml.g4dn.xlarg'" in result.output and "ml.g4dn.xlarge" in result.output
    assert _run("cost", "--throughput", "10").exit_code == 2


def test_prices_filter_and_json(tmp_path: Path):
    out = tmp_path / "prices.json"
    result = _run("prices", "--filter", "g4dn", "--json", out)
    assert result.exit_code == 0, result.output
    assert "ml.g4dn.xlarge" in result.output and "0.7364" in result.output
    data = json.loads(out.read_text())
    assert {e["instance"] for e in data["entries"]} == {"g4dn.xlarge", "ml.g4dn.xlarge", "ml.g4dn.2xlarge"}
    assert data["versions"][0].startswith("prices.csv")


def test_prices_malformed_user_file_names_the_line(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("provider,instance,usd_per_hour\naws,my.box,0.1\naws,other.box,cheap\n")
    result = _run("prices", "--prices", bad)
    assert result.exit_code == 2
    assert f"{bad}:3: usd_per_hour 'cheap' is not a positive number" in result.output.replace("\n", "")


def test_report_command(study_dir: Path, tmp_path: Path):
    out = tmp_path / "report.json"
    result = _run(
        "report",
        study_dir,
        "--p99-ms",
        "100",
        "--instance",
        "c7i.xlarge",
        "--target-rps",
        "250",
        "--json",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "Recommended: openvino-int8" in result.output
    assert f"report: {study_dir / 'report.html'}" in result.output.replace("\n", "")
    data = json.loads(out.read_text())
    rec = data["recommendation"]
    assert rec["constraints"]["p99_ms"] == 100 and rec["winner"]["usd_per_hour"] == 0.1785
    assert rec["winner"]["capacity"]["target_rps"] == 250
    assert (study_dir / "summary.md").exists() and (study_dir / "results.csv").exists()


def test_report_command_on_a_folder_that_is_not_a_study(tmp_path: Path):
    result = _run("report", tmp_path)
    assert result.exit_code == 2 and "not a study folder" in result.output


def test_compare_command(tmp_path: Path):
    gpu = MachineInfo(label="g4dn", instance="g4dn.xlarge")  # priced from the catalogue: 0.526
    cpu = write_study(tmp_path / "cpu", [make_trial("openvino-int8", "int8", capacity_rps=90)])
    gpu_dir = write_study(tmp_path / "gpu", [make_trial("tensorrt", "fp16", capacity_rps=400, machine=gpu)])
    out = tmp_path / "compare.json"
    result = _run("compare", cpu, gpu_dir, "--out", tmp_path / "merged", "--json", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["recommendation"]["machines"] == ["g4dn.xlarge", "ml.c5.xlarge"]
    assert data["recommendation"]["winner"]["machine"] == "g4dn.xlarge"
    assert (tmp_path / "merged" / "report.html").exists()


def test_report_command_rejects_an_unknown_objective(study_dir: Path):
    result = _run("report", study_dir, "--objective", "fast")
    assert result.exit_code == 2
    assert "--objective: Input should be 'cost', 'throughput' or 'p99'" in result.output
