"""The Stack interface: one serving stack (deploybench's server, TorchServe, Triton, LitServe) behind one API.

A stack turns a candidate (backend + canonical knobs) into a running server on loopback: check it is
installed, prepare the model in the stack's own format, start it on free ports, wait for health, say
where and how the load generator talks to it, report what it says about itself, stop its whole
process tree. Adding a stack means one new module in this package with one class decorated @register.

Canonical knobs are deploybench's (workers, threads per worker, max_batch_size, max_delay_ms: delays
in ms); each stack maps them to its own names and units in `settings()`, pure data, recorded with the
trial, so a search strategy can treat the stack as one more dimension.
"""

from __future__ import annotations

import abc
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from deploybench.backends.base import Availability
from deploybench.config import ModelSpec
from deploybench.load.targets import HttpTarget, Target
from deploybench.results import Candidate
from deploybench.stacks.process import (
    LOOPBACK,
    ServerProcess,
    ServerStartError,
    free_port,
    log_tail,
    stop_server,
    wait_ready,
)
from deploybench.stacks.process import launch as launch_process

CANONICAL_KNOBS = frozenset({"workers", "threads", "max_batch_size", "max_delay_ms"})
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
HTTP_TIMEOUT_S = 5.0


class UnknownStackError(ValueError):
    """A stack name that no registered stack answers to."""


@dataclass(frozen=True)
class StackLaunch:
    """Everything one start of a stack needs: what to serve, where its files go, how long to wait."""

    model: ModelSpec
    candidate: Candidate
    workdir: Path
    log_path: Path
    cache_dir: Path | None = None
    timeout_s: float = 600.0
    on_message: Callable[[str], None] = field(default=lambda message: None, compare=False)


@dataclass(frozen=True)
class Endpoint:
    """Where the load generator sends requests, in which protocol and content type."""

    url: str
    protocol: str
    content_type: str
    model_name: str = "model"


@dataclass
class StackServer:
    """A started stack: its process tree, its ports and endpoint, and the knobs it was given."""

    stack: Stack
    process: ServerProcess
    endpoint: Endpoint
    ports: dict[str, int]
    settings: dict[str, Any]
    workdir: Path
    log_start: int = 0  # the log's size at launch: what came before belongs to earlier runs
    ready_s: float | None = None  # process launch to its first ready answer: this machine's cold start

    def new_log(self) -> str:
        """What this run of the stack has logged so far."""
        try:
            with self.process.log_path.open("rb") as log:
                log.seek(self.log_start)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        return self.process.proc.pid

    def alive(self) -> bool:
        return self.process.proc.poll() is None

    def target(self, payloads: list[bytes], content_type: str | None = None) -> Target:
        """The load generator's target; content_type is the raw payloads' (wrapping stacks ignore it)."""
        return self.stack.target(self, payloads, content_type or self.endpoint.content_type)

    def predict(self, payload: bytes, timeout_s: float = 60.0) -> list[int]:
        """One request outside the load generator: the top class indices the stack answered, best first."""
        body, headers = self.stack.request(self, payload)
        request = urllib.request.Request(self.endpoint.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return self.stack.top_classes(response.read())

    def reported(self) -> dict[str, Any]:
        """What the stack says about itself now (never raises: a stack that cannot say reports nothing)."""
        try:
            return self.stack.reported(self)
        except (OSError, ValueError, KeyError) as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    def stop(self) -> None:
        stop_server(self.process)
        self.stack.cleanup(self)


def http_get(url: str, timeout_s: float = HTTP_TIMEOUT_S) -> tuple[int, bytes]:
    """(status, body) of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def json_top_classes(body: bytes) -> list[int]:
    """deploybench's answer shape, {"predictions": [{"index": ...}, ...]}, best first."""
    return [int(p["index"]) for p in json.loads(body)["predictions"]]


def thread_env(threads: int) -> dict[str, str]:
    """The same threading environment for every stack: N intra-op threads, OpenMP's own wait policy
    (as deploybench's workers at default knobs: serve/placement.py says why) unless the user set one.

    deploybench's own workers set these; TorchServe, Triton and LitServe do not, so without them a
    comparison would measure oversubscription, not the stack.
    """
    env = {var: str(threads) for var in THREAD_ENV_VARS}
    if "OMP_WAIT_POLICY" in os.environ:
        env["OMP_WAIT_POLICY"] = os.environ["OMP_WAIT_POLICY"]
    return env


class Stack(abc.ABC):
    """One serving stack. Subclasses hold no state: everything per start lives in StackLaunch/StackServer."""

    name: ClassVar[str]
    protocol: ClassVar[str]
    description: ClassVar[str] = ""
    install_hint: ClassVar[str] = ""
    backends: ClassVar[frozenset[str] | None] = None  # None: any backend deploybench builds
    port_names: ClassVar[tuple[str, ...]] = ("http",)
    content_type: ClassVar[str] = "image/jpeg"
    # the canonical knobs settings() honours; a candidate moving any other off its default is not planned
    knobs: ClassVar[frozenset[str]] = frozenset()
    delay_step_ms: ClassVar[float | None] = None  # the finest delay it takes (None: any), e.g. whole ms
    # the RuntimeKnobs.decoder values it decodes with: the other stacks run THE reference
    # preprocessing (Pillow) in their own handlers; only deploybench's server has the decoder knob
    decoders: ClassVar[frozenset[str]] = frozenset({"pillow"})

    @abc.abstractmethod
    def availability(self) -> Availability:
        """Whether the stack can run here; if not, 'unavailable: <why> (install with ...)'."""

    def unsupported(self, backend: str) -> str | None:
        """Why this stack cannot serve `backend`, or None when it can."""
        if self.backends is None or backend in self.backends:
            return None
        return f"{self.name} serves {', '.join(sorted(self.backends))} here, not {backend}"

    def cannot_express(self, candidate: Candidate, default: Candidate) -> str | None:
        """Why this stack cannot serve `candidate`'s knobs as they are (None: it can), against the
        stack's `default` candidate: a knob it lacks held off its default, or a delay finer than its
        step. Served anyway, it would be measured at other knobs than its deploybench twin."""
        if why := self.decoder_refusal(candidate):
            return why
        for knob in sorted(CANONICAL_KNOBS - self.knobs):
            if getattr(candidate, knob) != getattr(default, knob):
                return f"{self.name} has no {knob} setting"
        step = self.delay_step_ms
        steps = candidate.max_delay_ms / step if step else 0.0
        if candidate.max_batch_size > 1 and abs(steps - round(steps)) > 1e-6:
            return f"{self.name} takes max_delay_ms in steps of {step:g} ms only"
        return None

    def decoder_refusal(self, candidate: Candidate) -> str | None:
        """Why this stack cannot decode the candidate's images as asked (None: it can)."""
        decoder = candidate.runtime.decoder
        if decoder in self.decoders:
            return None
        return f"{self.name} preprocesses with Pillow only: decoder {decoder} is deploybench's server's knob"

    @abc.abstractmethod
    def settings(self, candidate: Candidate) -> dict[str, Any]:
        """The candidate's canonical knobs in the stack's own names and units (plain data, no effects)."""

    def prepare(self, launch: StackLaunch) -> dict[str, Any]:
        """Put the model in the stack's format under launch.workdir; returns what command() needs."""
        return {}

    @abc.abstractmethod
    def command(
        self, launch: StackLaunch, ports: dict[str, int], prepared: dict[str, Any]
    ) -> tuple[list[str], dict[str, str]]:
        """The command line and the extra environment that start the stack in the foreground."""

    @abc.abstractmethod
    def endpoint(self, ports: dict[str, int]) -> Endpoint:
        """Where inference requests go once it runs."""

    @abc.abstractmethod
    def is_ready(self, server: StackServer) -> bool:
        """Health: True once the stack answers and every model worker is loaded."""

    def target(self, server: StackServer, payloads: list[bytes], content_type: str) -> Target:
        """The load generator's target: the payloads as this stack's requests."""
        return HttpTarget(server.endpoint.url, payloads, content_type=content_type)

    def request(self, server: StackServer, payload: bytes) -> tuple[bytes, dict[str, str]]:
        """One request's body and headers, exactly as the target sends them."""
        return payload, {"Content-Type": server.endpoint.content_type}

    def top_classes(self, body: bytes) -> list[int]:
        """Class indices of one answer, best first."""
        return json_top_classes(body)

    def reported(self, server: StackServer) -> dict[str, Any]:
        """What the stack reports about itself (workers, batch sizes formed); {} when it has no such API."""
        return {}

    def cleanup(self, server: StackServer) -> None:
        """After stop: remove bulky scratch files (unpacked models); configs and logs stay."""
        return None

    def start(self, launch: StackLaunch) -> StackServer:
        """Prepare, launch, wait for health; raises ServerStartError (with the log tail) when it cannot,
        at once for a decoder it does not have (never served silently with Pillow instead)."""
        if why := self.decoder_refusal(launch.candidate):
            raise ServerStartError(why, "")
        launch.workdir.mkdir(parents=True, exist_ok=True)
        try:
            prepared = self.prepare(launch)
        except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
            message = f"{self.name}: preparing the model failed: {type(exc).__name__}: {exc}"
            with launch.log_path.open("a") as log:  # the trial's log says why, like a server's would
                log.write(message + "\n")
            raise ServerStartError(message, log_tail(launch.log_path)) from exc
        ports = allocate_ports(self.port_names)
        command, env = self.command(launch, ports, prepared)
        log_start = launch.log_path.stat().st_size if launch.log_path.exists() else 0
        launched = time.monotonic()
        proc = launch_process(command, launch.log_path, cwd=launch.workdir, env=env)
        process = ServerProcess(proc, ports[self.port_names[0]], launch.log_path, command)
        settings = self.settings(launch.candidate)
        server = StackServer(self, process, self.endpoint(ports), ports, settings, launch.workdir, log_start)
        wait_ready(process, lambda: self.is_ready(server), launch.timeout_s, self.name)
        server.ready_s = round(time.monotonic() - launched, 3)
        return server


def allocate_ports(names: tuple[str, ...]) -> dict[str, int]:
    """One distinct free loopback port per name."""
    ports: dict[str, int] = {}
    while len(ports) < len(names):
        port = free_port()
        if port not in ports.values():
            ports[names[len(ports)]] = port
    return ports


_REGISTRY: dict[str, type[Stack]] = {}


def register(cls: type[Stack]) -> type[Stack]:
    """Class decorator: make a stack known by its name."""
    _REGISTRY[cls.name] = cls
    return cls


def all_stacks() -> dict[str, type[Stack]]:
    """Every registered stack, in the package's module order (deploybench's reference first)."""
    # lazy: the package imports this module; the registry loads every stack on first use
    from deploybench.stacks import _STACK_MODULES, _load_all

    _load_all()
    order = {f"deploybench.stacks.{module}": i for i, module in enumerate(_STACK_MODULES)}
    ranked = sorted(_REGISTRY.items(), key=lambda item: order.get(item[1].__module__, len(order)))
    return dict(ranked)


def get_stack(name: str) -> Stack:
    """Instantiate a stack by name; unknown names list the known ones."""
    stacks = all_stacks()
    if name not in stacks:
        raise UnknownStackError(f"unknown stack {name!r}; known stacks: {', '.join(sorted(stacks))}")
    return stacks[name]()


def loopback_url(port: int, path: str = "") -> str:
    return f"http://{LOOPBACK}:{port}{path}"
