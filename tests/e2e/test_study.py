"""The study end to end: real variants, real servers on loopback, real load, a real report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TESTS
from helpers.study_runs import kill_after_first_trial, read_trials, resume

TINY = TESTS / "study" / "data" / "tiny.yaml"
pytestmark = pytest.mark.slow


def study_command(out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "deploybench.cli",
        "run",
        str(TINY),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        *extra,
    ]


ACCURACY = ("--eval-data", "bundled", "--max-accuracy-drop", "5")  # scored on the shipped labelled set


def test_killed_study_resumes_without_repeating_or_losing_trials(tmp_path: Path) -> None:
    out, cache = tmp_path / "study", tmp_path / "cache"
    command = study_command(out, cache, *ACCURACY)
    before = kill_after_first_trial(command, out, timeout_s=400)
    after = resume(command, out, before, tmp_path / "run.json")
    ids = [t.trial_id for t in after]
    assert set(ids) == {"eager@cpu/w1t2/b1d0", "onnxruntime@cpu/w1t2/b1d0", "onnxruntime@cpu/w2t1/b1d0"}
    for trial in after:
        assert trial.status == "ok", (trial.trial_id, trial.reason, trial.log_tail)
        levels = {p.concurrency for p in trial.points}  # the baseline at the fixed level, the others swept
        assert levels == {4} if trial.candidate.backend == "eager" else levels >= {1, 2, 4}, trial.trial_id
        assert sum(p.ok for p in trial.points) > 0
        assert trial.peak_rss_mb and trial.peak_rss_mb > 50
        assert trial.machine.price_per_hour == 0.17 and trial.weights.startswith("random")
        assert trial.accuracy is not None and trial.accuracy.n == 80
        assert trial.machine.price_source == "given: --price-per-hour" and trial.machine.cores
        workers = (trial.stack.reported if trial.stack else {}).get("workers", [])
        assert len(workers) == trial.candidate.workers and workers[0]["runtime_settings"], trial.stack
        assert trial.front_cpu_pct is not None
    for name in (
        "study.yaml",
        "environment.json",
        "variants.json",
        "report.html",
        "summary.md",
        "results.csv",
    ):
        assert (out / name).exists(), name
    assert "## Accuracy on labelled data" in (out / "summary.md").read_text()
    summary = json.loads((tmp_path / "run.json").read_text())
    assert len(summary["rows"]) == 3 and summary["report"].endswith("report.html")


def test_a_server_that_cannot_start_is_recorded_as_failed_and_the_study_completes(tmp_path: Path) -> None:
    out = tmp_path / "study"
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [
        *study_command(out, tmp_path / "cache"),
        "--model",
        "helpers.server_only_failure:build",
        "--backends",
        "eager",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = read_trials(out)
    assert [t.trial_id for t in trials] == ["eager@cpu/w1t2/b1d0", "eager@cpu/w2t1/b1d0"]
    for trial in trials:
        assert trial.status == "failed"
        assert "did not start" in (trial.reason or "")  # "deploybench did not start: ..." since stacks
        assert not trial.retryable  # its own failure: a rerun does not measure it again
        assert "weights file missing in the serving environment" in (trial.log_tail or "")
    assert "No candidate can be recommended" in done.stdout
