"""Fixtures for the load generator's tests: a real server on loopback, in a subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploybench.config import LoadConfig

SERVER = Path(__file__).with_name("loopback_server.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"test server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("test server did not start listening")


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """Base URL of the loopback test server (see loopback_server.py for its routes)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), str(port)])
    try:
        wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def payloads() -> list[bytes]:
    return [b"x" * 21_000, b"y" * 20_000]


def quick_cfg(**overrides: object) -> LoadConfig:
    """Short windows so a point takes a few seconds, not minutes."""
    values: dict[str, object] = {
        "warmup_requests": 5,
        "warmup_s": 0.2,
        "window_s": 0.5,
        "min_window_requests": 20,
        "max_windows": 6,
        "duration_s": 6.0,
        "request_timeout_s": 5.0,
    }
    values.update(overrides)
    return LoadConfig(**values)
