"""Every stack serves EfficientNet-Lite0 through its adapter on loopback: right answers, knobs applied.

Real servers (deploybench serve, TorchServe's JVM, Triton via PyTriton, LitServe, Ray Serve), real HTTP, the
real load generator. Each start is given non-default knobs, and the test reads back what the stack
itself reports (TorchServe's management API, Triton's model config and statistics).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.stacks_support import MODEL, installed

from deploybench.config import LoadConfig
from deploybench.load import measure_point
from deploybench.results import Candidate
from deploybench.stacks import StackLaunch, StackServer
from deploybench.stacks.process import ServerStartError

pytestmark = pytest.mark.slow

# (stack, knobs, concurrency of the short load): non-default knobs, so the test can see them applied.
CASES: dict[str, tuple[dict[str, Any], int]] = {
    "deploybench": ({"workers": 1, "threads": 1}, 2),
    "torchserve": ({"workers": 2, "threads": 1, "max_batch_size": 4, "max_delay_ms": 4.2}, 4),
    "pytriton": ({"workers": 2, "threads": 1, "max_batch_size": 8, "max_delay_ms": 20.0}, 8),
    "litserve": ({"workers": 1, "threads": 2, "max_batch_size": 4, "max_delay_ms": 5.0}, 4),
    "rayserve": ({"workers": 2, "threads": 1, "max_batch_size": 4, "max_delay_ms": 5.0}, 4),
}
LOAD = LoadConfig(duration_s=6, window_s=1.0, min_window_requests=5, max_windows=4, warmup_s=0.5)


@pytest.fixture(params=sorted(CASES))
def served(
    request: pytest.FixtureRequest, tmp_path: Path, stack_cache: Path
) -> Iterator[tuple[StackServer, int]]:
    name = request.param
    stack = installed(name)
    knobs, concurrency = CASES[name]
    candidate = Candidate(backend="onnxruntime", stack=name, **knobs)
    launch = StackLaunch(MODEL, candidate, tmp_path / "work", tmp_path / "stack.log", stack_cache, 600)
    try:
        server = stack.start(launch)
    except ServerStartError as exc:
        pytest.fail(f"{name} did not start: {exc}\n{exc.log_tail}")
    try:
        yield server, concurrency
    finally:
        server.stop()
    assert not server.alive(), f"{name} outlived stop()"


def test_stack_answers_the_load_generator_with_the_eager_top1(
    served: tuple[StackServer, int], sample: bytes, eager_top1: int
) -> None:
    server, concurrency = served
    assert server.ready_s is not None and 0 < server.ready_s < 600  # its cold start, kept for the fleet plan
    assert server.predict(sample)[0] == eager_top1, server.stack.name
    point = measure_point(server.target([sample]), LOAD, concurrency=concurrency).point
    assert point.ok >= 5 and point.error_count == 0, (server.stack.name, point.errors)
    reported = server.reported()
    if server.stack.name == "torchserve":
        assert reported["workers"] == 2 and reported["worker_states"] == ["READY", "READY"], reported
        assert (reported["batchSize"], reported["maxBatchDelay"]) == (4, 5), reported  # ms, rounded up
        assert {"config.properties", "sagemaker.env"} <= {p.name for p in server.workdir.iterdir()}
    if server.stack.name == "pytriton":
        assert reported["instance_count"] == 2 and reported["max_batch_size"] == 8, reported
        assert reported["max_queue_delay_microseconds"] == 20_000, reported
        formed = {int(size) for size in reported["batch_sizes"]}
        assert max(formed) > 1, f"Triton formed no batch above 1 under {concurrency} clients: {reported}"
