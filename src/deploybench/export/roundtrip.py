"""The round trip of an export: the archive served the way its target runs it, measured side by side
with the trial's configuration on deploybench's server, in the same run.

Both servers run at once with the trial's knobs; closed-loop load rounds at `clients` alternate
between them, so drift from other processes on the machine hurts both alike (the recorded figure was
taken at another time: on a shared machine, side by side is the fair comparison). Every round is
bounded in time and in requests; everything is on loopback. bench/export_roundtrip.py is a thin
command line over `measure_round_trip`.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from pydantic import Field

from deploybench.config import LoadConfig, ModelSpec, StrictModel
from deploybench.export.container import entrypoint
from deploybench.export.targets import CONTAINER, SAGEMAKER_PYTORCH, SAGEMAKER_RAYSERVE
from deploybench.load import HttpTarget, run_load
from deploybench.recommend.ties import paired_ratio
from deploybench.results import Candidate, RunoffSample
from deploybench.sagemaker.archive import safe_extract
from deploybench.stacks.base import json_top_classes
from deploybench.stacks.process import (
    LOOPBACK,
    ServerProcess,
    free_port,
    launch,
    start_server,
    stop_server,
    wait_ready,
)

CLIENTS = 16
ROUNDS = 6
DURATION_S = 5.0
WARMUP_S = 1.0  # per round and server: both stay warm between rounds
MAX_REQUESTS_PER_S = 2000  # a round's request bound: duration x this, far above any CPU server here
START_TIMEOUT_S = 600.0
SERVED_AS = {
    CONTAINER: "its `serve` entrypoint, the container's command (port and cache folder set by environment)",
    SAGEMAKER_RAYSERVE: "python -m deploybench.stacks.rayserve_app --exported FOLDER (config.yaml's app)",
    SAGEMAKER_PYTORCH: "deploybench serve FOLDER: TorchServe under AWS's SageMaker toolkit, README env",
}


class RoundTripPlan(StrictModel):
    """How long the round trip loads each server: alternating rounds at `clients`, each bounded."""

    clients: int = Field(CLIENTS, ge=1, le=256)
    rounds: int = Field(ROUNDS, ge=1, le=20)
    duration_s: float = Field(DURATION_S, gt=0, le=120, description="seconds per round and server")


class RoundTrip(StrictModel):
    """The exported archive's throughput beside the trial's configuration, measured in one run."""

    target: str
    served_as: str = Field(description="how the exported archive was started (its target's command)")
    clients: int
    rounds: int
    duration_s: float = Field(description="seconds of load per round and server (after a warm-up)")
    exported_rps: float = Field(description="median over the rounds, the exported archive")
    trial_rps: float = Field(
        description="median over the rounds, the trial's configuration on deploybench's server"
    )
    ratio: float = Field(description="exported / trial's configuration, round by round (geometric mean)")
    ratio_low: float | None = Field(None, description="95% paired interval (None: one round)")
    ratio_high: float | None = None
    exported_rates: list[float]
    trial_rates: list[float]
    errors: int = Field(description="failed requests, both servers, all rounds")
    answers_match: bool = Field(description="both answered the payload with the same top classes")


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def exported_command(
    target: str, folder: Path, port: int, env: dict[str, str], scratch: Path
) -> tuple[list[str], dict[str, str]]:
    """How the target runs the unpacked archive, here on loopback: the container's entrypoint, Ray
    Serve's exported application, or `deploybench serve` with the README's environment."""
    if target == CONTAINER:
        return entrypoint(folder, port, LOOPBACK, scratch / "container-cache")
    if target == SAGEMAKER_RAYSERVE:
        command = [sys.executable, "-m", "deploybench.stacks.rayserve_app", "--exported", str(folder)]
        return [*command, "--port", str(port)], {}
    command = [sys.executable, "-m", "deploybench.cli", "serve", str(folder), "--host", LOOPBACK]
    return [*command, "--port", str(port)], dict(env)


@contextmanager
def _exported_server(
    archive: Path, target: str, env: dict[str, str], scratch: Path
) -> Iterator[ServerProcess]:
    folder = safe_extract(archive, scratch / "archive")
    port = free_port()
    command, extra = exported_command(target, folder, port, env, scratch)
    server = ServerProcess(
        launch(command, scratch / "exported.log", env=extra), port, scratch / "exported.log", command
    )
    try:
        wait_ready(server, lambda: _ping(server.base_url), START_TIMEOUT_S, f"the exported {target} archive")
        yield server
    finally:
        stop_server(server)


@contextmanager
def _trial_server(
    spec: ModelSpec, candidate: Candidate, cache_dir: Path | None, scratch: Path
) -> Iterator[ServerProcess]:
    server = start_server(
        spec, candidate, scratch / "trial.log", cache_dir=cache_dir, timeout_s=START_TIMEOUT_S
    )
    try:
        yield server
    finally:
        stop_server(server)


def _rate(
    server: ServerProcess, bodies: list[bytes], content_type: str, clients: int, duration_s: float
) -> tuple[float, int]:
    """(ok responses/s, errors) of one closed-loop round, bounded in time and in requests."""
    cfg = LoadConfig(
        concurrency=clients, duration_s=duration_s, warmup_s=WARMUP_S, window_s=duration_s / 3,
        min_window_requests=10, max_windows=3, max_requests=int(duration_s * MAX_REQUESTS_PER_S),
    )  # fmt: skip
    point = run_load(HttpTarget(server.invocations_url, bodies, content_type=content_type), cfg).points[0]
    return point.throughput_rps, point.error_count


def _top_classes(server: ServerProcess, body: bytes, content_type: str) -> list[int]:
    request = urllib.request.Request(
        server.invocations_url, data=body, headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json_top_classes(response.read())


def _alternate(
    servers: dict[str, ServerProcess],
    bodies: list[bytes],
    content_type: str,
    plan: RoundTripPlan,
    on_progress: Callable[[str], None],
) -> tuple[dict[str, list[float]], int]:
    """Load rounds alternating between the servers, the order swapped every round so neither always
    runs first: (each one's rates, failed requests in all)."""
    rates: dict[str, list[float]] = {name: [] for name in servers}
    errors = 0
    names = list(servers)
    for index in range(plan.rounds):
        for name in names if index % 2 == 0 else names[::-1]:  # ABBA: neither always goes first
            server = servers[name]
            rate, failed = _rate(server, bodies, content_type, plan.clients, plan.duration_s)
            rates[name].append(round(rate, 2))
            errors += failed
        figures = ", ".join(f"{name} {values[-1]:,.1f} req/s" for name, values in rates.items())
        on_progress(f"round trip {index + 1}/{plan.rounds} at {plan.clients} clients: {figures}")
    return rates, errors


def paired(
    exported: list[float], trial: list[float], clients: int, window_s: float
) -> tuple[float, float | None, float | None]:
    """(ratio, 95% low, high) of exported over the trial's configuration, round by round: each round's
    two figures were taken back to back, so a slow spell of the machine divides out of its ratio.
    The study's own paired statistic (recommend/ties.py, as in its runoffs): the geometric mean of
    the rounds' ratios with a t interval; one round gives its ratio and no interval."""
    samples = [
        RunoffSample(group="round-trip", concurrency=clients, window_s=window_s, rps=r)
        for r in (trial, exported)
    ]
    found = paired_ratio(*samples)
    if found is None:
        ratios = [a / b for a, b in zip(exported, trial, strict=True) if b > 0]
        return (round(statistics.median(ratios), 3) if ratios else 0.0), None, None
    return round(found.ratio, 3), round(found.low, 3), round(found.high, 3)


def measure_round_trip(
    archive: Path,
    target: str,
    spec: ModelSpec,
    candidate: Candidate,
    bodies: list[bytes],
    *,
    content_type: str = "image/jpeg",
    env: dict[str, str] | None = None,
    cache_dir: Path | None = None,
    plan: RoundTripPlan | None = None,
    on_progress: Callable[[str], None] = lambda message: None,
) -> RoundTrip:
    """Serve `archive` as `target` runs it beside the trial's configuration, alternate load rounds."""
    scratch = Path(tempfile.mkdtemp(prefix="deploybench-roundtrip-"))
    plan = plan or RoundTripPlan()
    try:
        with ExitStack() as stack:
            on_progress(f"round trip: serving the archive as {target} runs it, and the trial's configuration")
            exported = stack.enter_context(_exported_server(archive, target, env or {}, scratch))
            trial = stack.enter_context(_trial_server(spec, candidate, cache_dir, scratch))
            body = bodies[0]
            match = _top_classes(exported, body, content_type) == _top_classes(trial, body, content_type)
            servers = {"exported": exported, "trial's configuration": trial}
            rates, errors = _alternate(servers, bodies, content_type, plan, on_progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    exported_rates, trial_rates = rates["exported"], rates["trial's configuration"]
    exported_rps, trial_rps = statistics.median(exported_rates), statistics.median(trial_rates)
    ratio, low, high = paired(exported_rates, trial_rates, plan.clients, plan.duration_s)
    return RoundTrip(
        target=target,
        served_as=SERVED_AS.get(target, SERVED_AS[SAGEMAKER_PYTORCH]),
        **plan.model_dump(),
        exported_rps=round(exported_rps, 2),
        trial_rps=round(trial_rps, 2),
        ratio=ratio,
        ratio_low=low,
        ratio_high=high,
        exported_rates=exported_rates,
        trial_rates=trial_rates,
        errors=errors,
        answers_match=match,
    )
