"""The study end to end: real variants, real servers on loopback, real load, a real report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploybench.results import TrialRecord

TINY = Path(__file__).parents[1] / "study" / "data" / "tiny.yaml"
TESTS = Path(__file__).parents[1]
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


def read_trials(out: Path) -> list[TrialRecord]:
    lines = (out / "trials.jsonl").read_text().splitlines()
    return [TrialRecord.model_validate_json(line) for line in lines if line.strip()]


def wait_for_trials(out: Path, proc: subprocess.Popen[bytes], count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    trials = out / "trials.jsonl"
    while time.monotonic() < deadline:
        if trials.exists() and len(trials.read_text().splitlines()) >= count:
            return
        assert proc.poll() is None, "the study ended before it recorded a trial"
        time.sleep(0.2)
    raise AssertionError(f"no {count} trial(s) recorded within {timeout_s} s")


ACCURACY = ("--eval-data", "bundled", "--max-accuracy-drop", "5")  # scored on the shipped labelled set


def test_killed_study_resumes_without_repeating_or_losing_trials(tmp_path: Path) -> None:
    out, cache = tmp_path / "study", tmp_path / "cache"
    first = subprocess.Popen(
        study_command(out, cache, *ACCURACY), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_trials(out, first, 1, timeout_s=400)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    before = read_trials(out)
    assert before, "the first run recorded nothing"

    done = subprocess.run(
        [*study_command(out, cache, *ACCURACY), "--json", str(tmp_path / "run.json")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    after = read_trials(out)
    ids = [t.trial_id for t in after]
    assert len(ids) == len(set(ids)), f"duplicated trials: {ids}"
    assert after[: len(before)] == before, "finished trials were measured again or changed"
    assert set(ids) == {"eager@cpu/w1t2/b1d0", "onnxruntime@cpu/w1t2/b1d0", "onnxruntime@cpu/w2t1/b1d0"}
    assert f"{len(before)} trials resumed" in done.stdout
    for trial in after:
        assert trial.status == "ok", (trial.trial_id, trial.reason, trial.log_tail)
        assert {p.concurrency for p in trial.points} >= {1, 2, 4}
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
    env = {**os.environ, "PYTHONPATH": f"{TESTS / 'study'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [
        *study_command(out, tmp_path / "cache"),
        "--model",
        "server_only_failure:build",
        "--backends",
        "eager",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = read_trials(out)
    assert [t.trial_id for t in trials] == ["eager@cpu/w1t2/b1d0", "eager@cpu/w2t1/b1d0"]
    for trial in trials:
        assert trial.status == "failed"
        assert "server" in (trial.reason or "")
        assert "weights file missing in the serving environment" in (trial.log_tail or "")
    assert "No candidate can be recommended" in done.stdout
