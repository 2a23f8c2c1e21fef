"""write_report: report.html (self-contained), summary.md, results.csv and JSON from a study folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import plotly.offline
import pytest
import yaml
from helpers.report_factory import cpu_study_trials, make_trial, write_study

from deploybench.config import Constraints
from deploybench.report import StudyReadError, load_study, write_report
from deploybench.report.tables import COST_FORMULA
from deploybench.results import TrialRecord

JUDGED_ON = "the trained stand-in efficientnet-lite0"  # backends.stand_in's words (that module loads torch)


def test_report_files_are_written_into_the_study_folder(study_dir: Path, cpu_trials: list[TrialRecord]):
    result = write_report(study_dir, Constraints(p99_ms=100), json_path=study_dir / "out" / "report.json")

    assert result.html_path == study_dir / "report.html"
    assert {p.name for p in result.paths.values()} == {
        "report.html",
        "summary.md",
        "results.csv",
        "report.json",
    }
    html = result.html_path.read_text(encoding="utf-8")
    assert plotly.offline.get_plotlyjs() in html  # inlined once: the report works offline
    page = html.replace(plotly.offline.get_plotlyjs(), "")
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=\"http|@import", page)  # nothing fetched
    assert html.count("Plotly.newPlot(") == 5
    assert COST_FORMULA in html
    for section in ('id="recommendation"', 'id="ranking"', 'id="parity"', 'id="environment"', 'id="cost"'):
        assert section in html
    assert "weights: pretrained" in html and "Random weights" not in html
    assert "avx512_vnni" in html  # environment.json shown

    frame = pd.read_csv(result.paths["csv"])
    assert len(frame) == len(cpu_trials)
    assert frame.loc[0, "rank"] == 1 and frame.loc[0, "candidate"] == result.recommendation.winner.label
    assert frame["cost_per_1m_usd"].dropna().is_monotonic_increasing
    assert set(frame["status"]) == {"ok", "rejected", "failed"}

    summary = result.paths["markdown"].read_text(encoding="utf-8")
    assert result.recommendation.headline in summary and "| 1 | openvino-int8" in summary

    data = json.loads(result.paths["json"].read_text(encoding="utf-8"))
    assert data["recommendation"]["headline"] == result.recommendation.headline
    assert data["recommendation"]["winner"]["vs_baseline"] == result.recommendation.winner.vs_baseline
    assert data["paths"]["html"] == str(result.html_path)


def test_every_figure_carries_its_interval_in_every_output(study_dir: Path):
    result = write_report(study_dir, json_path=study_dir / "report.json")
    winner = result.recommendation.winner
    thr, p99, cost = winner.throughput_ci, winner.p99_ci, winner.cost_per_1m_ci
    shown = f"{winner.throughput_rps:,.1f} ({thr.low:,.1f}–{thr.high:,.1f})"
    html = result.html_path.read_text(encoding="utf-8")
    summary = result.paths["markdown"].read_text(encoding="utf-8")
    for text in (html, summary):
        assert shown in text
        assert f"{winner.p99_ms:,.1f} ({p99.low:,.1f}–{p99.high:,.1f})" in text
        assert f"${winner.cost_per_1m:.2f} ({cost.low:.2f}–{cost.high:.2f})" in text
        assert result.recommendation.comparison in text
    frame = pd.read_csv(result.paths["csv"])
    top = frame.loc[0]
    assert top["throughput_low"] == pytest.approx(thr.low)
    assert top["throughput_high"] == pytest.approx(thr.high)
    assert top["p99_low"] == pytest.approx(p99.low) and top["cost_per_1m_high"] == pytest.approx(cost.high)
    assert isinstance(top["interval_method"], str)
    data = json.loads((study_dir / "report.json").read_text(encoding="utf-8"))["recommendation"]
    assert data["winner"]["throughput_ci"]["low"] == pytest.approx(thr.low)
    assert data["comparison"] == result.recommendation.comparison


def test_random_weights_are_flagged_everywhere(tmp_path: Path):
    study = write_study(tmp_path / "random", cpu_study_trials(weights="random"))
    result = write_report(study)
    assert "Random weights" in result.html_path.read_text(encoding="utf-8")
    assert "Warning: random weights" in result.paths["markdown"].read_text(encoding="utf-8")
    assert set(pd.read_csv(result.paths["csv"])["weights"]) == {"random"}


def test_a_verdict_judged_on_the_trained_stand_in_says_so(tmp_path: Path):
    trials = cpu_study_trials(weights="random")
    judged = [t for t in trials if t.precision == "int8" and t.parity and t.parity.verdict == "passed"]
    assert judged
    for trial in judged:
        assert trial.parity is not None
        trial.parity = trial.parity.model_copy(update={"judged_on": JUDGED_ON})
    result = write_report(write_study(tmp_path / "stand-in", trials))
    label = f"passed (judged on {JUDGED_ON})"
    assert label in result.html_path.read_text(encoding="utf-8")
    assert label in result.paths["markdown"].read_text(encoding="utf-8")


def test_all_rejected_study_still_gets_a_report(tmp_path: Path):
    trials = [
        make_trial("openvino-int8", "int8", status="rejected", reason="top-1 0.5 < 0.75"),
        make_trial("compile", status="failed", reason="server crashed"),
    ]
    result = write_report(write_study(tmp_path / "rejected", trials))
    assert result.recommendation.winner is None
    html = result.html_path.read_text(encoding="utf-8")
    assert "No candidate can be recommended" in html and "hero none" in html


def test_constraints_default_to_the_study_file(study_dir: Path):
    config = yaml.safe_load((study_dir / "study.yaml").read_text())
    config["constraints"] = {"p99_ms": 60, "objective": "p99"}
    (study_dir / "study.yaml").write_text(yaml.safe_dump(config))
    rec = write_report(study_dir).recommendation
    assert rec.constraints == Constraints(p99_ms=60, objective="p99")


def test_price_per_hour_given_at_report_time(study_dir: Path):
    rec = write_report(study_dir, price_override=0.3286).recommendation
    assert rec.winner.usd_per_hour == 0.3286
    assert rec.winner.cost_per_1m == pytest.approx(0.3286 / (rec.winner.throughput_rps * 3600) * 1e6)


def test_torn_last_line_is_skipped_with_a_warning(tmp_path: Path, cpu_trials: list[TrialRecord]):
    root = write_study(tmp_path / "running", cpu_trials, torn_tail='{"schema_version": 1, "trial_')
    study = load_study(root)
    assert len(study.trials) == len(cpu_trials)
    assert study.warnings == [
        f"{root / 'trials.jsonl'}:{len(cpu_trials) + 1}: incomplete last line skipped (study still running?)"
    ]
    assert "incomplete last line" in write_report(root).html_path.read_text(encoding="utf-8")


def test_bad_trial_line_names_file_and_line(tmp_path: Path, cpu_trials: list[TrialRecord]):
    root = write_study(tmp_path / "bad", cpu_trials[:2])
    lines = (root / "trials.jsonl").read_text().splitlines()
    lines.insert(1, '{"trial_id": "x"}')
    (root / "trials.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(StudyReadError, match=r"trials.jsonl:2: not a trial record: "):
        load_study(root)


def test_not_a_study_folder(tmp_path: Path):
    with pytest.raises(StudyReadError, match="not a study folder"):
        load_study(tmp_path)
    with pytest.raises(StudyReadError, match="not a folder"):
        load_study(tmp_path / "missing")
