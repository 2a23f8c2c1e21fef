"""Faults behind a real server: a worker killed under load, timeouts, SIGTERM draining, load failures."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from helpers.serve_support import SMALL_MODEL, Server, ping, request, serve_cli, start_server

from deploybench.inputs.payload import default_payload_path

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


RECORDING_HANDLER = """
import time
from pathlib import Path

def model_fn(model_dir):
    return Path(model_dir) / "computed.txt"

def transform_fn(model, body, content_type, accept):
    seconds, name = body.decode().split()
    with model.open("a") as log:
        log.write(name + "\\n")
    time.sleep(float(seconds))
    return name.encode()
"""

CRASHING_HANDLER = """
import os
import signal

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    os.kill(os.getpid(), signal.SIGSEGV)  # a native crash, as a broken extension would cause
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


@pytest.fixture(scope="module")
def recording_server_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """One worker, 1 s timeout; the handler logs every request it computes into computed.txt."""
    tmp = tmp_path_factory.mktemp("recording")
    folder = tmp / "model"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text(textwrap.dedent(RECORDING_HANDLER))
    running = start_server(tmp / "run", str(folder), "--timeout-s", "1", "--workers", "1")
    yield running, folder / "computed.txt"
    running.stop()


@pytest.fixture
def recording_server(recording_server_once: tuple[Server, Path]) -> tuple[Server, Path]:
    """The module's recording server with an empty log."""
    recording_server_once[1].unlink(missing_ok=True)
    return recording_server_once


def computed(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def metric(server: Server, name: str) -> float:
    text = request(f"{server.url}/metrics")[2].decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def raw_request(port: int, body: bytes, declared: int | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    length = len(body) if declared is None else declared
    sock.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
        + body
    )
    return sock


def test_request_whose_client_left_is_not_computed(recording_server: tuple[Server, Path]) -> None:
    running, log = recording_server
    url = f"{running.url}/invocations"
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(request, url, b"0.6 first", {"Content-Type": "text/plain"})
        time.sleep(0.2)  # the worker is busy with `first`
        gone = [raw_request(running.port, f"0.01 gone{i}".encode()) for i in range(3)]
        time.sleep(0.2)  # queued behind `first`
        for sock in gone:
            sock.close()
        assert busy.result(timeout=30)[:3:2] == (200, b"first")
    assert request(url, b"0.01 after", {"Content-Type": "text/plain"})[:3:2] == (200, b"after")
    assert computed(log) == ["first", "after"]
    assert metric(running, 'deploybench_requests_total{status="499"}') == 3


def test_timed_out_requests_leave_the_queue_and_are_not_computed(
    recording_server: tuple[Server, Path],
) -> None:
    running, log = recording_server
    url = f"{running.url}/invocations"
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(request, url, b"2.0 slow", {"Content-Type": "text/plain"})
        time.sleep(0.2)
        queued = pool.submit(request, url, b"0.01 queued", {"Content-Type": "text/plain"})
        assert queued.result(timeout=30)[0] == 504  # after 1 s, while `slow` still runs
        assert metric(running, "deploybench_queue_depth") == 0
        assert slow.result(timeout=30)[0] == 504
    time.sleep(1.0)  # `slow` ends; the worker would take `queued` now if it were still there
    assert request(url, b"0.01 after", {"Content-Type": "text/plain"})[:3:2] == (200, b"after")
    assert computed(log) == ["slow", "after"]


def test_a_client_trickling_its_body_gets_408(recording_server: tuple[Server, Path]) -> None:
    running, _ = recording_server
    with raw_request(running.port, b"0.01 par", declared=100) as sock:
        start = time.monotonic()
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - start < 5
    assert b"connection: close" in answer.lower()


def test_a_model_crashing_on_every_batch_ends_failed_not_in_a_loop(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text(textwrap.dedent(CRASHING_HANDLER))
    running = start_server(tmp_path / "run", str(folder), "--max-worker-restarts", "2")
    url = f"{running.url}/invocations"
    try:
        statuses, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline:
            status, _, body = request(f"{running.url}/ping")
            if status == 503 and json.loads(body)["status"] == "failed":
                break
            statuses.append(request(url, b"x", {"Content-Type": "text/plain"})[0])
            time.sleep(0.05)
        assert json.loads(body)["status"] == "failed", statuses
        assert set(statuses) <= {500, 503} and statuses.count(500) == 3, statuses
        restarts = metric(running, "deploybench_worker_restarts_total")
        time.sleep(1.5)
        assert metric(running, "deploybench_worker_restarts_total") == restarts == 2  # no hot loop
        status, _, body = request(url, b"x", {"Content-Type": "text/plain"})
        assert status == 503 and "failed" in json.loads(body)["error"]
        assert ping(running.url) == 503
    finally:
        running.stop()
    assert "crashed 3 times in a row" in running.log(), running.log()


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
    result = serve_cli(*args)
    assert result.returncode == 1, result.stderr
    assert message in " ".join(result.stderr.split())  # Rich wraps long lines
    assert "ready on" not in result.stdout
