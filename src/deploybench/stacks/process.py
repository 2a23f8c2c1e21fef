"""Start a candidate's server as a subprocess on a free loopback port, watch it, stop it.

The study talks to the server only over HTTP, exactly as a user's client would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from deploybench.config import ModelSpec, RuntimeKnobs
from deploybench.lifetime import die_with_parent
from deploybench.results import Candidate

LOOPBACK = "127.0.0.1"


class ServerStartError(RuntimeError):
    """The server exited or never became ready; carries the tail of its log and, when it exited, its
    exit code (negative: the signal that ended it), so a study can tell a kill from outside from a
    server that failed on its own."""

    def __init__(self, message: str, log_tail: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.log_tail = log_tail
        self.returncode = returncode


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def runtime_flags(knobs: RuntimeKnobs) -> list[str]:
    """Every runtime knob as an explicit `deploybench serve` flag, so the command alone reproduces it."""
    return [
        f"--streams={knobs.streams}",
        "--overlap" if knobs.overlap else "--no-overlap",
        "--pin" if knobs.pin else "--no-pin",
        f"--front={knobs.front}",
        f"--inter-op-threads={knobs.inter_op_threads}",
        *([] if knobs.spin is None else ["--spin" if knobs.spin else "--no-spin"]),  # None: the default
        "--thread-pinning" if knobs.thread_pinning else "--no-thread-pinning",
        *([] if knobs.decoder == "pillow" else [f"--decoder={knobs.decoder}"]),  # pillow: the default
    ]


def sagemaker_args(spec: ModelSpec) -> list[str]:
    """A SageMaker archive or folder is served with its own handler (the positional argument); --model
    names it too so the worker's artifact cache keys match the study's, and the payload lets the
    worker check predict_fn and calibrate exactly as the study did."""
    # lazy: torch loads only for a SageMaker model
    from deploybench.models.sagemaker import is_sagemaker_source

    if not is_sagemaker_source(spec.source):
        return []
    args = [spec.source, "--content-type", spec.content_type]
    args += ["--input-shape", ",".join(map(str, spec.input_shape))]
    return args + (["--payload", str(spec.payload)] if spec.payload is not None else [])


def gate_args(spec: ModelSpec, candidate: Candidate) -> list[str]:
    """A built-in model served with a decoder other than Pillow names the study's own payload: the
    decoder's agreement gate (inputs/decoders.py) checks those photos first, so the requests the load
    test sends are served as Pillow would decode them. Pillow's commands stay as they were."""
    # lazy: torch loads only for a SageMaker model
    from deploybench.models.sagemaker import is_sagemaker_source

    if candidate.runtime.decoder == "pillow" or spec.payload is None or is_sagemaker_source(spec.source):
        return []
    return ["--payload", str(spec.payload)]


def served_spec(spec: ModelSpec, candidate: Candidate) -> ModelSpec:
    """The ModelSpec `deploybench serve` builds from serve_command's words: the model, its weights and
    calibration folder, a SageMaker model's requests (sagemaker_args) and the decoder gate's photos
    (gate_args); nothing else travels."""
    served = ModelSpec(source=spec.source, weights=spec.weights, calibration_data=spec.calibration_data)
    if gate_args(spec, candidate):
        return served.model_copy(update={"payload": spec.payload})
    if not sagemaker_args(spec):
        return served
    requests = {"payload": spec.payload, "content_type": spec.content_type, "input_shape": spec.input_shape}
    return served.model_copy(update=requests)


def serve_command(spec: ModelSpec, candidate: Candidate, port: int, cache_dir: Path | None) -> list[str]:
    """The exact `deploybench serve` command line a user could run to reproduce the trial."""
    cmd = [
        sys.executable,
        "-m",
        "deploybench.cli",
        "serve",
        *sagemaker_args(spec),
        "--model",
        spec.source,
        "--weights",
        spec.weights,
        "--backend",
        candidate.backend,
        "--workers",
        str(candidate.workers),
        "--threads",
        str(candidate.threads),
        "--max-batch-size",
        str(candidate.max_batch_size),
        "--max-delay-ms",
        f"{candidate.max_delay_ms:g}",
        *runtime_flags(candidate.runtime),
        *gate_args(spec, candidate),
        "--host",
        LOOPBACK,
        "--port",
        str(port),
    ]
    if cache_dir is not None:
        cmd += ["--cache-dir", str(cache_dir)]
    if spec.calibration_data is not None:  # the served int8 artifact must be the verified one
        cmd += ["--calibration-data", str(spec.calibration_data)]
    return cmd


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    command: list[str]

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def invocations_url(self) -> str:
        return f"{self.base_url}/invocations"


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def launch(
    command: list[str], log_path: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a server in its own session (stop_server ends its whole process group), logging to a file."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only calls a prctl bound before the fork
        )


def wait_ready(server: ServerProcess, is_ready: Callable[[], bool], timeout_s: float, name: str) -> None:
    """Poll is_ready() until True; on exit or timeout stop the server, raise ServerStartError (log tail)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            stop_server(server)  # the launcher exited: what it started must not outlive it
            code = server.proc.returncode
            raise ServerStartError(
                f"{name} exited with code {code} before ready", log_tail(server.log_path), code
            )
        try:
            if is_ready():
                return
        except (OSError, ValueError):
            pass  # not answering yet
        except ServerStartError:
            stop_server(server)  # is_ready saw it fail for good (e.g. workers dying in a loop)
            raise
        time.sleep(0.25)
    stop_server(server)
    raise ServerStartError(f"{name} not ready after {timeout_s:.0f} s", log_tail(server.log_path))


def start_server(
    spec: ModelSpec, candidate: Candidate, log_path: Path, *, cache_dir: Path | None, timeout_s: float
) -> ServerProcess:
    """Launch the server and wait until /ping is 200; raise ServerStartError with the log tail if not."""
    port = free_port()
    command = serve_command(spec, candidate, port, cache_dir)
    server = ServerProcess(launch(command, log_path), port, log_path, command)
    wait_ready(server, lambda: _ping(server.base_url), timeout_s, "server")
    return server


def run_in_session(command: list[str], env: dict[str, str]) -> int:
    """Run a server in the foreground in a session of its own, until it exits or we are told to stop
    (SIGTERM, SIGINT: passed on to it); then nothing of that session is left, even what its launcher
    detached (TorchServe's JVM, Ray's actors). It dies with us too, kill -9 included."""
    proc = subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=die_with_parent)  # noqa: PLW1509
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    stopped: list[int] = []

    def pass_on(signum: int, _frame: object) -> None:
        stopped.append(signum)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)

    for sig in previous:
        signal.signal(sig, pass_on)
    try:
        code = proc.wait()
        return 0 if stopped else code  # told to stop: however it ended, that is not its failure
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        kill_session(proc.pid)


def kill_session(session: int, grace_s: float = 10.0) -> None:
    """SIGKILL what is left of a server's session (launch starts each server in a new one, so its id is
    the server's pid) once `grace_s` has passed: for servers whose children leave its process group."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _session_members(session):
        time.sleep(0.2)
    for pid in _session_members(session):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _session_members(session: int) -> list[int]:
    members = []
    for pid in psutil.pids():
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
            if os.getsid(pid) == session and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                members.append(pid)
    return members


def stop_server(server: ServerProcess, grace_s: float = 15.0) -> None:
    """SIGTERM (the server drains), then SIGKILL the whole process group if it lingers."""
    if server.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.proc.wait(timeout=5)


TREE_REFRESH = 10  # samples between rescans of the server's process tree


@dataclass
class ResourceMonitor:
    """Samples the server's process tree: peak resident memory and CPU use while load runs."""

    pid: int
    interval_s: float = 0.5
    peak_rss_bytes: int = 0
    peak_worker_rss_bytes: int = 0
    cpu_samples: list[float] = field(default_factory=list)
    front_samples: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> ResourceMonitor:
        self._thread = threading.Thread(target=self._run, name="resource-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.pid)
        return [root, *root.children(recursive=True)]

    def _run(self) -> None:
        """Finding the tree reads every process on the machine, which costs CPU: do it every
        TREE_REFRESH samples only, not on every sample, so the study stays out of the server's way."""
        procs: dict[int, psutil.Process] = {}
        tree: list[psutil.Process] = []
        samples = 0
        while not self._stop.wait(self.interval_s):
            try:
                if samples % TREE_REFRESH == 0 or not all(proc.is_running() for proc in tree):
                    tree = self._tree()
            except psutil.Error:
                return
            samples += 1
            total_cpu, total_rss, front_cpu = 0.0, 0, 0.0
            for proc in tree:
                known = procs.setdefault(proc.pid, proc)
                with contextlib.suppress(psutil.Error):
                    cpu = known.cpu_percent(None)
                    total_cpu += cpu
                    front_cpu += cpu if proc.pid == self.pid else 0.0
                    rss = known.memory_info().rss
                    total_rss += rss
                    self.peak_worker_rss_bytes = max(self.peak_worker_rss_bytes, rss)
            self.peak_rss_bytes = max(self.peak_rss_bytes, total_rss)
            self.cpu_samples.append(total_cpu)
            self.front_samples.append(front_cpu)

    @property
    def cpu_pct(self) -> float | None:
        """Mean CPU use of the server tree (100 = one core busy); first sample primes psutil, so drop it."""
        return _mean(self.cpu_samples[1:])

    @property
    def front_cpu_pct(self) -> float | None:
        """Mean CPU use of the HTTP front process alone (the tree's root)."""
        return _mean(self.front_samples[1:])


def _mean(samples: list[float]) -> float | None:
    return sum(samples) / len(samples) if samples else None
