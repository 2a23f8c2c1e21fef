"""Helpers for the load generator's tests: a free loopback port, the loopback test server
(loopback_server.py, run as a subprocess) and short load configurations."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from deploybench.config import LoadConfig

LOOPBACK_SERVER = Path(__file__).with_name("loopback_server.py")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
