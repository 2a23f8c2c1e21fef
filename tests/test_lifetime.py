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
