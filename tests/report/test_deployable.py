"""Where each candidate deploys as measured: the export targets' rules in the report (summary.md and
the JSON), the same rules `deploybench export` refuses by."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.report_factory import make_trial, write_study

from deploybench.config import RuntimeKnobs
from deploybench.report import write_report
from deploybench.report.deployable import ARTIFACT_BACKENDS, deployable_as
from deploybench.results import Candidate


def test_each_target_says_whether_it_runs_the_candidate_as_measured() -> None:
    batched = Candidate(backend="openvino-int8", workers=2, threads=1, max_batch_size=4, max_delay_ms=2.0)
    found = deployable_as(batched, "torchvision:resnet50")
    assert found["container"] is None and found["sagemaker-rayserve"] is None
    assert "cannot run dynamic batching" in (found["sagemaker-pytorch"] or "")
    streams = batched.model_copy(update={"runtime": RuntimeKnobs(streams=2), "max_batch_size": 1})
    found = deployable_as(streams, "torchvision:resnet50")
    assert found["container"] is None  # the container runs deploybench's server: every knob
    assert found["sagemaker-rayserve"] == "runtime knobs only deploybench's server sets: streams"
    on_ray = batched.model_copy(update={"stack": "rayserve"})
    assert "the container runs deploybench's own server" in (
        deployable_as(on_ray, "torchvision:x")["container"] or ""
    )
    eager = Candidate(backend="eager")
    found = deployable_as(eager, "/models/net.onnx")
    assert found["container"] is None  # a file of this machine travels inside the container export
    assert found["sagemaker-pytorch"] == "eager has no standalone artifact to load"


def test_the_report_shows_where_each_candidate_deploys(tmp_path: Path) -> None:
    trials = [
        make_trial("eager", capacity_rps=16),
        make_trial("onnxruntime", capacity_rps=40, max_batch_size=4),
    ]
    study = write_study(tmp_path / "s", trials)
    write_report(study, json_path=study / "report.json")
    summary = (study / "summary.md").read_text()
    assert "## Deployable as measured" in summary
    section = summary.split("## Deployable as measured")[1].splitlines()
    row = next(line for line in section if line.startswith("| onnxruntime"))
    assert "| container, sagemaker-rayserve |" in row and "sagemaker-pytorch: the SageMaker PyTorch" in row
    winner = json.loads((study / "report.json").read_text())["recommendation"]["winner"]
    assert winner["deployable_as"]["container"] is None
    assert "batching" in winner["deployable_as"]["sagemaker-pytorch"]
    html = (study / "report.html").read_text()
    assert 'id="deployable"' in html and "sagemaker-pytorch: the SageMaker PyTorch" in html


def test_the_reports_artifact_backends_are_the_exporters() -> None:
    pytest.importorskip("torch")  # the exporters load it; CI's other-Python job has none
    from deploybench.export.runtimes import exportable_backends

    assert exportable_backends() == ARTIFACT_BACKENDS
