"""die_with_parent: a process we start does not outlive the process that started it, kill -9 included."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

# The middle process starts a grandchild that asks for the parent-death signal (or not), prints the
# grandchild's pid, then sleeps until it is killed.
MIDDLE = """
import subprocess, sys, time
code = "import sys, time\\n" + sys.argv[1] + "\\nprint('asked', flush=True)\\ntime.sleep(60)"
child = subprocess.Popen([sys.executable, "-c", code])
print(child.pid, flush=True)
time.sleep(60)
"""
ASKS = "import signal\nfrom deploybench.lifetime import die_with_parent\ndie_with_parent(signal.SIGKILL)"


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(("setup", "dies"), [(ASKS, True), ("pass", False)])
def test_a_child_that_asks_dies_with_its_parent(setup: str, dies: bool) -> None:
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE, setup], stdout=subprocess.PIPE, text=True)
    assert middle.stdout is not None
    lines = {middle.stdout.readline().strip(), middle.stdout.readline().strip()}  # its pid, and "asked"
    lines.discard("asked")
    grandchild = int(lines.pop())
    middle.kill()
    middle.wait(timeout=10)
    try:
        assert _gone_within(grandchild, 3.0) is dies
    finally:
        if psutil.pid_exists(grandchild):
            psutil.Process(grandchild).kill()


def test_a_child_whose_parent_is_already_gone_dies_at_once() -> None:
    """The race: the parent died before the child asked. The child was re-parented and would never get
    the signal, so asking raises it at once."""
    code = (
        "import os, sys, time, signal\n"
        "from deploybench import lifetime\n"
        "real = os.getppid\n"
        "calls = iter([real(), 1])\n"
        "os.getppid = lambda: next(calls)\n"
        "lifetime.die_with_parent(signal.SIGKILL)\n"
        "sys.exit(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=30, check=False)
    assert done.returncode == -9


# A study stand-in: it starts the load workers' fork server as the load generator does, then forks a
# child that keeps the fork server's "alive" pipe open (as any process forked from a study after the
# fork server started does), prints the fork server's pid and sleeps until it is killed.
STUDY = """
import os, sys, time
from multiprocessing import forkserver
from deploybench.load.runner import _worker_context

if __name__ == "__main__":
    worker = _worker_context().Process(target=os.getpid)
    worker.start()
    worker.join()
    print(forkserver._forkserver._forkserver_pid, flush=True)
    if os.fork() == 0:
        time.sleep(10)
        os._exit(0)
    time.sleep(60)
"""


def test_the_load_fork_server_dies_with_the_study_even_when_its_pipe_stays_open(tmp_path) -> None:
    script = tmp_path / "study.py"
    script.write_text(STUDY)
    study = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert study.stdout is not None
    server = int(study.stdout.readline())
    assert not _gone_within(server, 0.5)  # serving while the study lives
    study.kill()
    study.wait(timeout=10)
    assert _gone_within(server, 5), "the fork server outlived the study"
