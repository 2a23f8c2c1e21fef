"""A trial whose server is killed from outside mid-load is lost to the infrastructure, not failed: it is
recorded retryable, with why, so a resumed study measures it again (study/loss.py)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psutil
import pytest
from helpers import TESTS, TINY

from deploybench.inputs.payload import default_payload_path, read_payloads
from deploybench.load import LiveStats
from deploybench.results import Candidate, MachineInfo
from deploybench.study.plan import PlannedTrial
from deploybench.study.spec import load_study_config
from deploybench.study.trial import TrialContext, TrialFiles, TrialJob, run_served_trial

pytestmark = pytest.mark.slow
STUDY = TESTS / "study" / "data" / "tiny.yaml"


def test_a_server_killed_from_outside_mid_trial_is_a_retryable_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    config = load_study_config(STUDY, {"model": {"source": TINY, "weights": "random"}})
    payloads = read_payloads(default_payload_path())
    ctx = TrialContext(config, "random", payloads, tmp_path / "cache", threading.Event())
    trial = PlannedTrial(Candidate(backend="eager"), "serve", precision="fp32")
    job = TrialJob(trial.candidate.key, trial, MachineInfo(label="ci"))
    killed: list[int] = []

    def kill_the_server(update: LiveStats) -> None:  # under load: the first live update
        if not killed:
            (server,) = [p for p in psutil.Process().children() if "serve" in p.cmdline()]
            server.kill()
            killed.append(server.pid)

    files = TrialFiles(tmp_path / "server.log", tmp_path / "stack")
    record = run_served_trial(ctx, job, files, kill_the_server)
    assert killed, "the load never reported progress"
    assert record.status == "failed" and record.retryable, (record.status, record.reason)
    assert (record.reason or "").startswith("lost to the infrastructure: its server was killed by SIGKILL")
    assert (record.reason or "").endswith("rerun to measure it")
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == psutil.STATUS_ZOMBIE
