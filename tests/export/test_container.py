"""The `container` export target and the default target: a trial measured on deploybench's server
exports as a container whose `serve` entrypoint runs the study's own server command, ships the
artifact it measured (never rebuilt), pins the measured versions, and is measured as exported."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml
from helpers.report_factory import make_trial, write_study
from helpers.serve_support import ping, request, start_server
from typer.testing import CliRunner

from deploybench.cache import TRACKED_LIBRARIES, installed_versions
from deploybench.cli import app
from deploybench.config import ModelSpec
from deploybench.export import ExportError, export_candidate
from deploybench.export.container import entrypoint, requirement_pins
from deploybench.export.core import default_target
from deploybench.export.roundtrip import RoundTripPlan
from deploybench.inputs.payload import default_payload_path
from deploybench.results import Candidate
from deploybench.stacks.process import free_port, serve_command

MOBILENET = {"source": "torchvision:mobilenet_v3_small", "weights": "random"}  # the tiny study's network


def _on(stack: str, **knobs: object) -> Candidate:
    return Candidate(backend="onnxruntime", stack=stack, **knobs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stack", "target", "why"),
    [
        ("deploybench", "container", "deploybench's own server"),  # whatever the model: it is shipped
        ("rayserve", "sagemaker-rayserve", "measured on rayserve"),
        ("torchserve", "sagemaker-pytorch", "measured on torchserve"),
    ],
)
def test_the_default_target_is_the_one_that_runs_the_trials_stack(stack: str, target: str, why: str) -> None:
    chosen, reason = default_target(_on(stack))
    assert chosen == target and why in reason


def test_a_stack_no_target_runs_is_refused_with_the_reason(tmp_path: Path) -> None:
    trial = make_trial("onnxruntime")
    trial = trial.model_copy(update={"candidate": trial.candidate.model_copy(update={"stack": "litserve"})})
    study = write_study(tmp_path / "s", [trial])
    with pytest.raises(ExportError, match="measured on litserve, which no export target runs as measured"):
        export_candidate(study, tmp_path / "m.tar.gz")
    result = CliRunner().invoke(app, ["export", str(study), "--out", str(tmp_path / "m.tar.gz")])
    assert result.exit_code == 2 and "pass --target" in result.output
    assert not (tmp_path / "m.tar.gz").exists()


def test_requirements_pin_the_measured_versions_and_refuse_another_artifact_key() -> None:
    pins = requirement_pins({"pillow": "13.0.0.post9"})  # measured with another pillow: it is pinned
    assert "pillow==13.0.0.post9" in pins
    torch = installed_versions(["torch"])["torch"]
    assert f"torch=={torch}" in pins and all("==" in pin for pin in pins)
    with pytest.raises(ExportError, match=r"torch 0\.0\.1 measured"):  # the artifact's key holds torch
        requirement_pins({"torch": "0.0.1"})


def _entrypoint_command(script: str, port: int, cache: Path) -> list[str]:
    """The exec line of `serve`, its variables as the container sets them, in words."""
    line = next(line for line in script.splitlines() if line.startswith("exec "))
    values = {
        '"${PYTHON:-python}"': sys.executable,
        '"${DEPLOYBENCH_HOST:-0.0.0.0}"': "127.0.0.1",
        '"${SAGEMAKER_BIND_TO_PORT:-8080}"': str(port),
        '"$CACHE"': str(cache),
    }
    for variable, value in values.items():
        line = line.replace(variable, value)
    return shlex.split(line)[1:]


def _container_study(tmp: Path) -> tuple[Path, Candidate]:
    trial = make_trial("onnxruntime", workers=1, threads=1, max_batch_size=2, capacity_rps=40)
    study = write_study(tmp / "study", [make_trial("eager", capacity_rps=10), trial])
    config = {"name": "t", "model": MOBILENET, "machine": {"label": "ci", "price_per_hour": 0.17}}
    (study / "study.yaml").write_text(yaml.safe_dump(config))
    environment = json.loads((study / "environment.json").read_text())
    libraries = {**installed_versions(TRACKED_LIBRARIES), "pillow": "13.0.0"}
    (study / "environment.json").write_text(json.dumps({**environment, "libraries": libraries}))
    return study, trial.candidate


def _wait_ping(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the entrypoint exited"
        if ping(url) == 200:
            return
        time.sleep(0.25)
    raise AssertionError("the entrypoint never answered /ping")


@pytest.mark.slow
def test_a_deploybench_trial_exports_as_a_container_that_runs_the_measured_command(tmp_path: Path) -> None:
    study, candidate = _container_study(tmp_path)
    cache = tmp_path / "cache"
    plan = RoundTripPlan(clients=4, rounds=1, duration_s=1.0)
    result = export_candidate(study, tmp_path / "m.tar.gz", cache_dir=cache, round_trip=plan)
    assert (result.target, result.backend) == ("container", "onnxruntime")
    assert "deploybench's own server" in result.target_reason
    folder = tmp_path / "unpacked"
    with tarfile.open(result.archive) as tar:
        tar.extractall(folder, filter="data")
    assert os.access(folder / "serve", os.X_OK) and (folder / "deploybench-src/deploybench/cli").is_dir()
    assert 'CMD ["serve"]' in (folder / "Dockerfile").read_text()
    assert "pillow==13.0.0" in (folder / "requirements.txt").read_text().splitlines()

    # one-to-one: the entrypoint is the study's own command for the trial, host/port/cache aside
    port, served_cache = free_port(), tmp_path / "served-cache"
    spec = ModelSpec(**MOBILENET)  # type: ignore[arg-type]
    expected = serve_command(spec, candidate, port, served_cache)
    assert _entrypoint_command((folder / "serve").read_text(), port, served_cache) == expected

    # measured as exported: same answers, no errors, the figure and the ratio in the README
    trip = result.round_trip
    assert trip is not None and trip.answers_match and trip.errors == 0 and trip.exported_rps > 0
    readme = (folder / "README.md").read_text()
    assert "## Measured as exported" in readme and f"| ratio | {trip.ratio:.3f} |" in readme
    assert json.loads((folder / "deploybench-export.json").read_text())["round_trip"]["ratio"] == trip.ratio

    # the container's entrypoint serves the shipped artifact: nothing is built at start-up
    shipped = {p.relative_to(folder / "cache") for p in (folder / "cache").rglob("*") if p.is_dir()}
    command, env = entrypoint(folder, port, "127.0.0.1", served_cache)
    proc = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        _wait_ping(f"http://127.0.0.1:{port}", proc)
        found = {p.relative_to(served_cache) for p in served_cache.rglob("*") if p.is_dir()}
        assert found == shipped
    finally:
        proc.terminate()
        proc.wait(30)

    # `deploybench serve ARCHIVE` runs that entrypoint; stopping it stops the server it started
    server = start_server(tmp_path / "serve", str(result.archive))
    try:
        body = default_payload_path().read_bytes()
        status, _, answer = request(f"{server.url}/invocations", body, {"Content-Type": "image/jpeg"})
        assert status == 200 and len(json.loads(answer)["predictions"]) == 5
        assert "the container's entrypoint" in server.log()
    finally:
        server.stop()
    assert ping(server.url) == 0


def test_the_round_trip_ratio_is_paired_round_by_round() -> None:
    from deploybench.export.roundtrip import paired

    # the machine slowed both servers alike in round 2: the ratio stays 0.9 in every round
    ratio, low, high = paired([90.0, 45.0, 90.0], [100.0, 50.0, 100.0], 16, 5.0)
    assert ratio == pytest.approx(0.9) and low == pytest.approx(0.9) and high == pytest.approx(0.9)
    ratio, low, high = paired([95.0, 105.0, 100.0], [100.0, 100.0, 100.0], 16, 5.0)
    assert low is not None and high is not None and low < ratio < high
    assert paired([80.0], [100.0], 16, 5.0) == (0.8, None, None)  # one round: no interval
