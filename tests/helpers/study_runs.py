"""Helpers for tests that run whole studies through the CLI: kill one mid-way, resume it, read it.

Every study they start dies with the test process (die_with_parent, as the study's own servers do): a
test run killed from outside leaves no study measuring on, nor its servers and load workers.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from deploybench.lifetime import die_with_parent
from deploybench.results import TrialRecord


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
        time.sleep(0.02)  # the kill must land before the study records the rest
    raise AssertionError(f"no {count} trial(s) recorded within {timeout_s} s")


def start_study(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The study's process, which gets SIGTERM when the test process ends, even by SIGKILL."""
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only calls a prctl bound before the fork
    )


def run_study_to_end(command: list[str]) -> subprocess.CompletedProcess[str]:
    """The study run to its end, its output captured; it too dies with the test process."""
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        preexec_fn=die_with_parent,
    )


def kill_after_first_trial(command: list[str], out: Path, timeout_s: float) -> list[TrialRecord]:
    """Start the study, SIGKILL it once a trial is recorded; the trials it left."""
    first = start_study(command)
    try:
        wait_for_trials(out, first, 1, timeout_s=timeout_s)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    before = read_trials(out)
    assert before, "the first run recorded nothing"
    return before


def resume(
    command: list[str], out: Path, before: list[TrialRecord], json_path: Path
) -> tuple[list[TrialRecord], str]:
    """Rerun the same command to the end: nothing repeated, nothing lost. (all trials, its stdout)"""
    done = run_study_to_end([*command, "--json", str(json_path)])
    assert done.returncode == 0, done.stdout + done.stderr
    after = read_trials(out)
    ids = [t.trial_id for t in after]
    assert len(ids) == len(set(ids)), f"duplicated trials: {ids}"
    assert after[: len(before)] == before, "finished trials were measured again or changed"
    assert f"{len(before)} trials resumed" in done.stdout
    assert NOTHING_MEASURED not in done.stdout, "the resumed run measured what was left"
    return after


NOTHING_MEASURED = "nothing was measured this time"


def rerun_measures_nothing(command: list[str], out: Path, before: list[TrialRecord]) -> str:
    """A finished study run again reads its answer back, measures nothing, and says so (its stdout)."""
    done = run_study_to_end(command)
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_trials(out) == before, "a finished study measured something again"
    assert NOTHING_MEASURED in done.stdout and "--fresh" in done.stdout, done.stdout
    return done.stdout
