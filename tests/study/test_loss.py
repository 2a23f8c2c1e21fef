"""A trial lost to the infrastructure is told from a candidate that failed on its own: by how its process
ended (a signal sent from outside, or its own crash), by the OOM killer, and by the load generator."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from deploybench.results import LoadPoint
from deploybench.study import loss
from deploybench.study.loss import broken_load, killed_from_outside


def ended_by(code: str, kill: signal.Signals | None = None) -> int:
    """The exit code of a Python child that runs `code`, killed with `kill` when given."""
    proc = subprocess.Popen([sys.executable, "-c", code])
    if kill is not None:
        proc.send_signal(kill)
    return proc.wait(timeout=30)


@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM])
def test_a_process_killed_from_outside_is_lost_to_the_infrastructure(kill: signal.Signals) -> None:
    code = ended_by("import time; time.sleep(60)", kill)
    assert (
        killed_from_outside(code, oom_before=None)
        == f"killed by {kill.name}, a signal the study did not send"
    )


@pytest.mark.parametrize("code", ["import os; os.abort()", "raise SystemExit(3)", "pass"])
def test_a_process_that_crashed_or_exited_by_itself_is_its_own_failure(code: str) -> None:
    assert killed_from_outside(ended_by(code), oom_before=None) is None


def test_a_kill_by_the_oom_killer_is_the_candidates_own_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vmstat = tmp_path / "vmstat"
    vmstat.write_text("pgfault 10\noom_kill 3\n")
    monkeypatch.setattr(loss, "VMSTAT", vmstat)
    before = loss.oom_kills()
    assert before == 3
    vmstat.write_text("pgfault 12\noom_kill 4\n")  # the kernel killed a process for memory meanwhile
    assert killed_from_outside(-signal.SIGKILL, before) is None
    assert killed_from_outside(-signal.SIGKILL, 4) is not None  # no OOM kill since: from outside


def test_a_load_worker_that_died_makes_the_trial_lost_not_the_candidates_failure() -> None:
    held = LoadPoint.model_construct(ok=10, invalid_reason=None)  # only the verdict's field matters here
    broken = LoadPoint.model_construct(ok=3, invalid_reason="load worker 0 died (exit code -9)")
    assert broken_load([held]) is None
    assert broken_load([held, broken]) == "the load generator broke (load worker 0 died (exit code -9))"
