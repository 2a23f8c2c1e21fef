"""A study killed with SIGKILL mid-trial leaves no process of its own running: not its server (nor the
server's workers), not the load generator's fork server, not a load worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import TESTS, TINY

STUDY = TESTS / "study" / "data" / "tiny.yaml"
pytestmark = pytest.mark.slow


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def is_load_worker(proc: psutil.Process) -> bool:
    """A load worker: a child of the fork server, which is the study's child running forkserver."""
    try:
        parent = proc.parent()
        return parent is not None and "forkserver" in " ".join(parent.cmdline())
    except psutil.Error:
        return False


def wait_mid_trial(study: subprocess.Popen[bytes] | psutil.Process, timeout_s: float) -> list[psutil.Process]:
    """The study's process tree once its server is up and a load worker sends it requests."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert psutil.Process(study.pid).status() != psutil.STATUS_ZOMBIE, (
            "the study ended before it was killed"
        )
        tree = descendants(study.pid)
        if any("serve" in p.cmdline() for p in tree if p.is_running()) and any(map(is_load_worker, tree)):
            return tree
        time.sleep(0.2)
    raise AssertionError(f"no trial was under load within {timeout_s} s")


def still_running(procs: list[psutil.Process]) -> list[str]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {' '.join(proc.cmdline())[:160]}")
        except psutil.NoSuchProcess:
            pass
    return alive


def ours(marks: list[str]) -> list[psutil.Process]:
    """Every process whose command line names one of this test's folders."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if any(mark in line for mark in marks) and proc.pid != os.getpid():
            found.append(proc)
    return found


def test_a_study_killed_mid_trial_leaves_no_process_of_its_own(tmp_path: Path) -> None:
    out, cache = tmp_path / "study", tmp_path / "cache"
    command = [sys.executable, "-m", "deploybench.cli", "run", str(STUDY), "--model", TINY]
    command += ["--backends", "eager", "--out", str(out), "--cache-dir", str(cache)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    study = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        tree = wait_mid_trial(study, timeout_s=300)
    finally:
        study.send_signal(signal.SIGKILL)
        study.wait(timeout=30)
    # The server drains on SIGTERM and its workers exit with it; the load generator's fork server
    # exits when the study does, and a load worker caught mid-point with it (its parent-death signal),
    # not at its own safety net (the point's 4 s + 10 s). Beyond a few seconds, anything left is a leak.
    deadline = time.monotonic() + 5
    while (still_running(tree) or ours([str(out), str(cache)])) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not still_running(tree), f"outlived the killed study: {still_running(tree)}"
    assert not still_running(ours([str(out), str(cache)]))


TEST_PROCESS = """
import sys, time
from helpers.study_runs import start_study
study = start_study(sys.argv[1:])
print(study.pid, flush=True)
time.sleep(600)
"""


def test_a_test_killed_while_its_study_runs_leaves_no_study_measuring_on(tmp_path: Path) -> None:
    """A test process (here a stand-in that starts its study as the tests' helpers do) killed with
    SIGKILL takes its study down with it, and the study its server and load workers."""
    out, cache = tmp_path / "study", tmp_path / "cache"
    command = [sys.executable, "-m", "deploybench.cli", "run", str(STUDY), "--model", TINY]
    command += ["--backends", "eager", "--out", str(out), "--cache-dir", str(cache)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    test = subprocess.Popen([sys.executable, "-c", TEST_PROCESS, *command], stdout=subprocess.PIPE, env=env)
    try:
        assert test.stdout is not None
        study = psutil.Process(int(test.stdout.readline()))
        tree = [study, *wait_mid_trial(study, timeout_s=300)]
    finally:
        test.send_signal(signal.SIGKILL)
        test.wait(timeout=30)
    deadline = time.monotonic() + 10
    while still_running(tree) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not still_running(tree), f"outlived the killed test: {still_running(tree)}"
