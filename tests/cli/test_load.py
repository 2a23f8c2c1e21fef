"""`deploybench load` end to end: live run with JSON/CSV output, and bad input named clearly."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from helpers.load_support import free_port
from typer.testing import CliRunner

from deploybench.cli import app

runner = CliRunner()
QUICK = ["--duration", "3", "--window", "0.5", "--warmup", "0.2", "--min-window-requests", "10"]


@pytest.mark.slow
def test_load_command_writes_json_and_csv(server_url: str, tmp_path: Path) -> None:
    out_json, out_csv = tmp_path / "load.json", tmp_path / "load.csv"
    result = runner.invoke(
        app,
        [
            "load",
            f"{server_url}/sleep/5",
            "--concurrency",
            "2",
            *QUICK,
            "--slo-p99-ms",
            "500",
            "--json",
            str(out_json),
            "--csv",
            str(out_csv),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "req/s" in result.output and "c=2" in result.output
    data = json.loads(out_json.read_text())
    verdict = "stable" if data["points"][0]["stable"] else "unstable"
    assert re.search(rf"(?<![a-z]){verdict}\b", result.output), result.output  # the JSON's verdict, printed
    assert data["schema_version"] == 1
    assert data["settings"]["concurrency"] == 2
    assert data["target"]["url"].endswith("/sleep/5")
    assert data["environment"]["logical_cpus"] >= 1
    point = data["points"][0]
    assert point["ok"] > 0 and point["histogram"] and point["slo"]["bound_ms"] == 500
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 1 and int(rows[0]["ok"]) == point["ok"]
    # the figures come with their intervals and the request accounting, in the table and the CSV
    assert "req/s (95% CI)" in result.output and "issued=ok+err+timeout" in result.output
    assert "p99 LoadGen" in result.output and "load client" in result.output
    low, high = float(rows[0]["throughput_low"]), float(rows[0]["throughput_high"])
    assert low <= float(rows[0]["throughput_rps"]) <= high
    assert int(rows[0]["issued"]) == point["accounting"]["issued"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0"], "--rate"),
        (["--duration", "-1"], "--duration"),
        (["--concurrency", "0"], "--concurrency"),
        (["--processes", "0"], "--processes"),
    ],
)
def test_nonsense_arguments_name_the_option(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["load", "http://127.0.0.1:9/x", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_bad_arrival_is_rejected_by_typer() -> None:
    result = runner.invoke(app, ["load", "http://127.0.0.1:9/x", "--rate", "5", "--arrival", "bursty"])
    assert result.exit_code == 2 and "--arrival" in result.output


def test_a_bad_request_intervals_file_is_a_clear_error(tmp_path: Path) -> None:
    trace = tmp_path / "gaps.txt"
    for text, message in (("1000\n0\n", "positive gaps"), ("10 ms\n", "gaps.txt"), ("10000\n", "mean rate")):
        trace.write_text(text)
        args = ["load", "http://127.0.0.1:9/x", "--request-intervals", str(trace), "--rate", "5"]
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.output, result.output
    absent = str(tmp_path / "no")
    missing = runner.invoke(app, ["load", "http://127.0.0.1:9/x", "--request-intervals", absent])
    assert missing.exit_code == 2 and "--request-intervals" in missing.output


def test_empty_or_missing_payload_fails_before_any_load(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    result = runner.invoke(app, ["load", "http://127.0.0.1:9/x", "--payload", str(empty)])
    assert result.exit_code == 2 and "empty payload" in result.output
    result = runner.invoke(app, ["load", "http://127.0.0.1:9/x", "--payload", str(tmp_path / "nope.jpg")])
    assert result.exit_code == 2 and "no such file" in result.output
    folder = tmp_path / "nothing"
    folder.mkdir()
    result = runner.invoke(app, ["load", "http://127.0.0.1:9/x", "--payload", str(folder)])
    assert result.exit_code == 2 and "no image files" in result.output


def test_unreachable_url_is_one_clear_error() -> None:
    result = runner.invoke(app, ["load", f"http://127.0.0.1:{free_port()}/invocations", "--duration", "5"])
    assert result.exit_code == 2
    assert "cannot connect" in result.output


def test_both_closed_and_open_loop_is_refused() -> None:
    result = runner.invoke(app, ["load", "http://127.0.0.1:9/x", "--rate", "5", "--concurrency", "2"])
    assert result.exit_code == 2 and "not both" in result.output


def test_rate_sweep_needs_an_slo() -> None:
    result = runner.invoke(app, ["load", "http://127.0.0.1:9/x", "--sweep", "rate"])
    assert result.exit_code == 2 and "--slo-p99-ms" in result.output


@pytest.mark.slow
def test_repeat_records_this_machines_between_run_noise(
    server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three back-to-back points of one server: their spread goes into the machine's record (here a
    folder of the test's own), and the next load's intervals add it and say so."""
    monkeypatch.setenv("DEPLOYBENCH_NOISE_DIR", str(tmp_path / "noise"))
    out_json = tmp_path / "load.json"
    args = ["load", f"{server_url}/sleep/5", "--concurrency", "2", *QUICK]
    result = runner.invoke(app, [*args, "--repeat", "3", "--json", str(out_json)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(out_json.read_text())["points"]) == 3
    assert "between-run spread of these 3 points" in result.output and "3 repeats in all" in result.output
    [path] = (tmp_path / "noise").glob("*.json")
    record = json.loads(path.read_text())
    assert record["throughput"]["repeats"] == 3 and record["throughput"]["df"] == 2
    assert record["sources"][0]["by"].startswith("deploybench load --repeat 3: c=2 on ")
    after = runner.invoke(app, [*args, "--json", str(out_json)])
    assert after.exit_code == 0, after.output
    interval = json.loads(out_json.read_text())["points"][0]["throughput_ci"]
    assert "between-run term" in interval["method"] and "from 3 repeats on this machine" in interval["method"]
    assert interval["between_run_rel_sd"] == pytest.approx(record["throughput"]["rel_sd"])


def test_repeat_needs_three_points_of_one_kind() -> None:
    result = runner.invoke(app, ["load", "http://127.0.0.1:9/x", "--repeat", "2"])
    assert result.exit_code == 2 and "--repeat" in result.output
    result = runner.invoke(app, ["load", "http://127.0.0.1:9/x", "--repeat", "3", "--sweep", "concurrency"])
    assert result.exit_code == 2 and "drop --sweep" in result.output
