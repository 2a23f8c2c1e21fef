"""Faults behind a real server: a worker killed under load, timeouts, SIGTERM draining, load failures."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from serve_support import SMALL_MODEL, Server, ping, request, start_server

from deploybench.payload import default_payload_path

pytestmark = pytest.mark.slow
JPEG = {"Content-Type": "image/jpeg"}

SLOW_HANDLER = """
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    time.sleep(float(body))
    return b"done"
"""


def worker_pids(server: Server) -> list[int]:
    children = psutil.Process(server.proc.pid).children()
    return [c.pid for c in children if "spawn_main" in " ".join(c.cmdline())]


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "model" / "code").mkdir(parents=True)
    (tmp_path / "model" / "code" / "inference.py").write_text(textwrap.dedent(SLOW_HANDLER))
    running = start_server(tmp_path / "run", str(tmp_path / "model"), "--timeout-s", "1.5", "--workers", "2")
    yield running
    running.stop()


def test_killed_worker_is_restarted_and_nothing_hangs(tmp_path: Path) -> None:
    running = start_server(tmp_path, "--model", SMALL_MODEL, "--threads", "1", "--max-batch-size", "4")
    url, body = f"{running.url}/invocations", default_payload_path().read_bytes()
    statuses: list[int] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            statuses.append(request(url, body, JPEG, timeout=30)[0])

    try:
        [victim] = worker_pids(running)
        with ThreadPoolExecutor(4) as pool:
            clients = [pool.submit(client) for _ in range(4)]
            time.sleep(1.0)
            os.kill(victim, signal.SIGKILL)
            seen_503 = any(ping(running.url) == 503 or time.sleep(0.05) for _ in range(40))
            deadline = time.monotonic() + 120
            while ping(running.url) != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            stop.set()
            for future in clients:
                future.result(timeout=60)  # every client request came back: none hung
        assert seen_503, "/ping should be 503 while no worker is ready"
        assert set(statuses) <= {200, 500, 503}, statuses
        assert all(request(url, body, JPEG)[0] == 200 for _ in range(3))
        assert worker_pids(running) != [victim]
        metrics = request(f"{running.url}/metrics")[2].decode()
        assert re.search(r"deploybench_worker_restarts_total 1\b", metrics)
    finally:
        stop.set()
        assert running.stop() == 0, running.log()


def test_timeout_answers_504_and_the_server_keeps_serving(slow_server: Server) -> None:
    url = f"{slow_server.url}/invocations"
    status, _, body = request(url, b"3", {"Content-Type": "text/plain"})
    assert status == 504 and b"no answer within" in body
    assert request(url, b"0.01", {"Content-Type": "text/plain"})[:3:2] == (200, b"done")


def test_sigterm_drains_in_flight_requests_then_exits(slow_server: Server) -> None:
    url = f"{slow_server.url}/invocations"
    with ThreadPoolExecutor(2) as pool:
        in_flight = [pool.submit(request, url, b"1.0", {"Content-Type": "text/plain"}) for _ in range(2)]
        time.sleep(0.4)
        slow_server.proc.send_signal(signal.SIGTERM)
        answers = [future.result(timeout=30) for future in in_flight]
    assert [(status, body) for status, _, body in answers] == [(200, b"done"), (200, b"done")]
    assert slow_server.proc.wait(30) == 0
    assert ping(slow_server.url) == 0  # no longer listening


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "no-such-backend"], "unknown backend 'no-such-backend'"),
        (["--model", "torchvision:no_such_net"], "no_such_net"),
    ],
)
def test_model_that_cannot_load_is_a_clear_startup_error(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deploybench.cli", "serve", *args, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert message in " ".join(result.stderr.split())  # Rich wraps long lines
    assert "ready on" not in result.stdout
