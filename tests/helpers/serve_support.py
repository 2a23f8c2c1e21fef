"""Helpers for the real-server tests: start `deploybench serve` as a subprocess on a free loopback port."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from deploybench.lifetime import die_with_parent
from helpers.load_support import free_port

SMALL_MODEL = "torchvision:mobilenet_v3_small"
START_TIMEOUT_S = 180.0


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return "".join(
            (self.log_dir / name).read_text(errors="replace") for name in ("stdout.txt", "stderr.txt")
        )

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


def _lower(headers: object) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}  # type: ignore[attr-defined]


def request(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 60.0
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request with urllib; returns (status, headers, body) for errors too."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, _lower(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, _lower(exc.headers), exc.read()


def ping(url: str) -> int:
    try:
        return request(f"{url}/ping", timeout=5)[0]
    except (urllib.error.URLError, OSError):
        return 0


def start_server(tmp: Path, *args: str, env: dict[str, str] | None = None, wait: bool = True) -> Server:
    """`python -m deploybench.cli serve ARGS --port P`, waiting for /ping 200 (or the process to exit)."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [sys.executable, "-m", "deploybench.cli", "serve", *args, "--port", str(port)]
    with (tmp / "stdout.txt").open("wb") as out, (tmp / "stderr.txt").open("wb") as err:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=err,
            env={**os.environ, **(env or {})},
            preexec_fn=die_with_parent,  # noqa: PLW1509 - dies with the test process, even by SIGKILL
        )
    server = Server(proc, port, tmp)
    deadline = time.monotonic() + START_TIMEOUT_S
    while wait and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
        if ping(server.url) == 200:
            return server
        time.sleep(0.2)
    if wait:
        server.stop()
        raise RuntimeError(f"server not ready after {START_TIMEOUT_S} s:\n{server.log()}")
    return server


def serve_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`deploybench serve ARGS` that must fail at start-up (a server that starts hits the timeout)."""
    return subprocess.run(
        [sys.executable, "-m", "deploybench.cli", "serve", *args, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def distinct_jpegs(count: int, seed: int = 0) -> list[bytes]:
    """Different small JPEGs (random colour fields), so every request has its own answer."""
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(count):
        pixels = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize((240, 300), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        bodies.append(buffer.getvalue())
    return bodies


def npy(body: bytes) -> np.ndarray:
    return np.load(io.BytesIO(body), allow_pickle=False)


def npy_body(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


INTERNALS = ("Traceback", "site-packages", "deploybench/", " object at 0x", 'File "')


def assert_no_internals(body: bytes) -> None:
    """An error body without --debug: no traceback, no paths, no repr of internal objects."""
    text = body.decode(errors="replace")
    leaked = [needle for needle in INTERNALS if needle in text]
    assert not leaked, f"error body shows {leaked}: {text[:300]}"
