"""What a cluster task gives the process it starts: the node's environment, and a clean end."""

from __future__ import annotations

import subprocess
import time

import psutil

from deploybench.study.executors.node import child_environment, kill_tree


def test_the_child_gets_the_nodes_own_thread_and_device_settings_not_rays() -> None:
    worker = {"PATH": "/usr/bin", "PYTHONPATH": "/src", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env = child_environment(worker, node={"PATH": "/usr/bin"}, gpu_ids=[])
    assert env == {"PATH": "/usr/bin", "PYTHONPATH": "/src"}  # Ray's one thread and hidden GPUs undone

    env = child_environment(worker, node={"OMP_NUM_THREADS": "4"}, gpu_ids=["2", "3"])
    assert env["OMP_NUM_THREADS"] == "4"  # what the user set on the node stays
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3"  # exactly the GPUs Ray assigned to this trial


def test_kill_tree_ends_the_process_and_everything_it_started() -> None:
    # a shell that starts a child in a session of its own (as the server is), then waits
    parent = subprocess.Popen(["bash", "-c", "setsid sleep 300 & sleep 300 & wait"])
    deadline = time.monotonic() + 10
    while len(psutil.Process(parent.pid).children(recursive=True)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = [psutil.Process(parent.pid), *psutil.Process(parent.pid).children(recursive=True)]
    assert len(tree) == 3
    kill_tree(parent.pid, grace_s=5)
    parent.wait(timeout=5)
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
