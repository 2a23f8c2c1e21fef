"""What a Ray task does on its node: start node_main in a fresh process, relay its events, clean up.

The task never measures anything itself. Ray adjusts its workers' environment (OMP_NUM_THREADS set to
the task's CPU count, accelerator visibility variables), so the task builds the child's environment
from the one the node was started with, and gives it exactly the GPUs Ray assigned. When Ray cancels
the task, or the work ends in any way, the child's whole process tree (server and its workers) goes.
Nothing here imports Ray at module level: the driver imports this module without a cluster.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

import deploybench
from deploybench.cache import installed_versions
from deploybench.lifetime import die_with_parent
from deploybench.stacks.process import log_tail
from deploybench.study.environment import LIBRARIES
from deploybench.study.executors.node_main import SERVER_LOG
from deploybench.study.loss import killed_from_outside, oom_kills

# Ray sets these in its workers (thread count, device visibility); the child gets the node's own.
RAY_ADJUSTED_VARIABLES = (
    "OMP_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "NEURON_RT_VISIBLE_CORES",
    "ONEAPI_DEVICE_SELECTOR",
)
READ_TIMEOUT_S = 0.5  # how long a read of the child's events may block: cancellation lands in between


def child_environment(
    current: Mapping[str, str], node: Mapping[str, str], gpu_ids: list[str]
) -> dict[str, str]:
    """The worker's environment with Ray's adjustments undone (the node's values, or unset), and the
    GPUs Ray assigned to this task made visible, none when it asked for none."""
    env = dict(current)
    for name in RAY_ADJUSTED_VARIABLES:
        if name in node:
            env[name] = node[name]
        else:
            env.pop(name, None)
    if gpu_ids:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    return env


def node_environment() -> dict[str, str]:
    """The environment the node was started with: our parent's (the raylet), before Ray adjusted ours."""
    try:
        parent = psutil.Process().parent()
        return dict(parent.environ()) if parent is not None else {}
    except psutil.Error:
        return {}  # unreadable: every adjusted variable is unset, the safe side


def kill_tree(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the process and all its descendants (the server drains), SIGKILL what is left."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


@functools.cache
def code_digest() -> str:
    """sha256 of deploybench's own source (file names and bytes): one version number can carry other
    code (an edited checkout on one node), and every node must measure with the driver's code."""
    root = Path(deploybench.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def node_identity() -> dict[str, Any]:
    """Which node took the work, and the code and versions it runs: every node that takes work is
    checked against what it must run (identity_mismatch), not only the one that prepared its type."""
    import ray

    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "address": ray.util.get_node_ip_address(),
        "hostname": socket.gethostname(),
        "ray": ray.__version__,
        "deploybench": deploybench.__version__,
        "code": code_digest(),
        "libraries": installed_versions(LIBRARIES),
        "python": ".".join(map(str, sys.version_info[:3])),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def identity_mismatch(identity: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """What this node runs that differs from what the work must run (the driver's deploybench, code
    and Ray; the libraries its machine type was prepared with), in words; None when all match."""
    wrong = [
        f"{name} {identity.get(name)} (expected {value})"
        for name, value in expected.items()
        if identity.get(name) != value
    ]
    if not wrong:
        return None
    where = f"node {identity['node_id'][:8]} ({identity['hostname']}, {identity['address']})"
    return f"{where} runs {', '.join(wrong)}"


def _read_events(proc: subprocess.Popen[bytes]) -> Iterator[dict[str, Any]]:
    """JSON lines from the child as they come, never blocking longer than READ_TIMEOUT_S."""
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    buffer = b""
    while True:
        if not selector.select(timeout=READ_TIMEOUT_S):
            continue
        chunk = os.read(proc.stdout.fileno(), 1 << 16)
        if not chunk:
            return
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _run_child(workdir: Path, gpu_ids: list[str]) -> Iterator[dict[str, Any]]:
    env = child_environment(os.environ, node_environment(), gpu_ids)
    command = [sys.executable, "-m", "deploybench.study.executors.node_main", str(workdir)]
    record, oom_before = None, oom_kills()
    with (workdir / "node.log").open("wb") as stderr:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only calls a prctl bound before the fork
        )
        try:
            for event in _read_events(proc):
                if event["event"] == "record":
                    record = event  # sent on with the server's log once the child is gone
                else:
                    yield event
            code = proc.wait()
        finally:
            kill_tree(proc.pid)
    if record is not None:
        server_log = workdir / SERVER_LOG
        yield {**record, "log": server_log.read_text(errors="replace") if server_log.exists() else ""}
    elif code != 0:
        tail = log_tail(workdir / "node.log")
        message = f"node process exited with code {code}"
        lost = killed_from_outside(code, oom_before)  # a kill from outside, not our code failing
        yield {
            "event": "error",
            "message": f"{message}: {lost}" if lost else message,
            "log_tail": tail,
            "lost": bool(lost),
        }


def run_on_node(job: dict[str, Any], payloads: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The Ray task (a generator: events stream to the driver while the work runs)."""
    import ray

    identity = node_identity()
    yield {"event": "started", **identity}
    refused = identity_mismatch(identity, job.get("expect", {}))
    if refused is not None:  # another code or library set would measure: this node does not
        yield {"event": "refused", "message": f"refused: {refused}"}
        return
    workdir = Path(tempfile.mkdtemp(prefix="deploybench-node-"))
    try:
        if payloads is not None:
            job = {**job, "payloads": payloads}
        (workdir / "job.json").write_text(json.dumps(job), encoding="utf-8")
        yield from _run_child(workdir, [str(gpu) for gpu in ray.get_gpu_ids()])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
