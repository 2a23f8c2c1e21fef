"""Pure parts of the stacks: knob mapping (ms canonical), config files, KServe v2 bodies, plan, installs."""

from __future__ import annotations

import ast
import json
import struct
from pathlib import Path

import pytest

import deploybench.stacks
from deploybench.load.targets import KServeV2Target, kserve_v2_body
from deploybench.results import Candidate
from deploybench.stacks import get_stack, resolve_stacks
from deploybench.stacks.torchserve import config_properties, java_major
from deploybench.study.plan import StackOffer, VariantSummary, plan_trials
from deploybench.study.spec import StudyConfig

BATCHED = Candidate(backend="onnxruntime", workers=2, threads=1, max_batch_size=8, max_delay_ms=2.5)


def test_canonical_milliseconds_become_each_stacks_own_unit() -> None:
    assert get_stack("torchserve").settings(BATCHED) == {
        "SAGEMAKER_MODEL_SERVER_WORKERS": 2,
        "SAGEMAKER_TS_BATCH_SIZE": 8,
        "SAGEMAKER_TS_MAX_BATCH_DELAY": 3,  # TorchServe takes whole ms: rounded up, never to 0
        "OMP_NUM_THREADS": 1,
    }
    triton = get_stack("pytriton").settings(BATCHED)
    assert (triton["instance_count"], triton["max_queue_delay_microseconds"]) == (2, 2500)
    litserve = get_stack("litserve").settings(BATCHED)
    assert (litserve["workers_per_device"], litserve["batch_timeout"]) == (2, 0.0025)  # seconds
    ray = get_stack("rayserve").settings(BATCHED)
    assert (ray["num_replicas"], ray["num_cpus"], ray["max_batch_size"]) == (2, 1, BATCHED.max_batch_size)
    assert ray["batch_wait_timeout_s"] == 0.0025  # @serve.batch takes seconds


def test_torchserve_config_binds_every_port_to_loopback_with_token_auth_off(tmp_path: Path) -> None:
    stack = get_stack("torchserve")
    ports = {name: 20000 + i for i, name in enumerate(stack.port_names)}
    text = config_properties(stack.settings(BATCHED), ports, tmp_path)
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["inference_address"] == "http://127.0.0.1:20000"
    assert props["grpc_inference_address"] == props["grpc_management_address"] == "127.0.0.1"
    assert len({props[k] for k in ("grpc_inference_port", "grpc_management_port")}) == 2
    assert props["disable_token_authorization"] == "true"
    model = json.loads(props["models"])["model"]["1.0"]
    assert (model["minWorkers"], model["maxWorkers"], model["batchSize"], model["maxBatchDelay"]) == (
        2,
        2,
        8,
        3,
    )


def test_kserve_v2_bodies_share_one_header_length_and_carry_the_image_as_bytes() -> None:
    images = [b"\xff\xd8" + b"x" * 10, b"\xff\xd8" + b"y" * 12345]
    target = KServeV2Target("http://127.0.0.1:9", "model", images)
    assert target.url == "http://127.0.0.1:9/v2/models/model/infer"
    for image, body in zip(images, target.payloads, strict=True):
        header = json.loads(body[: target.header_bytes])
        assert header["inputs"][0]["datatype"] == "BYTES" and header["inputs"][0]["shape"] == [1, 1]
        tensor = body[target.header_bytes :]
        assert struct.unpack("<I", tensor[:4])[0] == len(image) and tensor[4:] == image
    alone, length = kserve_v2_body(images[0], "image", "logits", 5)
    assert json.loads(alone[:length])["outputs"][0]["parameters"]["classification"] == 5


def test_each_extra_stack_serves_the_fastest_backend_it_runs_and_unavailable_ones_are_recorded() -> None:
    summaries = [
        VariantSummary("eager", "passed", precision="fp32", images_per_s={1: 16.0}),
        VariantSummary("openvino-int8", "passed", precision="int8", images_per_s={1: 90.0}),
        VariantSummary("onnxruntime", "passed", precision="fp32", images_per_s={1: 25.0}),
    ]
    offers = [
        StackOffer("deploybench"),
        StackOffer("torchserve", backends=frozenset({"eager", "onnxruntime"})),
        StackOffer("litserve"),
        StackOffer("pytriton", unavailable="unavailable: no tritonserver (install with ...)"),
    ]
    trials = plan_trials(StudyConfig(serve_top=2, tune_top=0), summaries, cores=2, stacks=offers)
    served = {(t.candidate.stack, t.candidate.backend) for t in trials if t.action == "serve"}
    assert served == {
        ("deploybench", "eager"),
        ("deploybench", "openvino-int8"),
        ("deploybench", "onnxruntime"),
        ("torchserve", "onnxruntime"),
        ("litserve", "openvino-int8"),
    }
    triton = next(t for t in trials if t.candidate.stack == "pytriton")
    assert triton.action == "skipped" and "install with" in (triton.reason or "")
    assert triton.candidate.key.startswith("pytriton:")
    assert len({t.candidate.key for t in trials}) == len(trials)


def test_other_stacks_only_leave_deploybench_out() -> None:
    summaries = [VariantSummary("onnxruntime", "passed", precision="fp32", images_per_s={1: 25.0})]
    trials = plan_trials(StudyConfig(), summaries, cores=2, stacks=[StackOffer("litserve")])
    assert {(t.candidate.stack, t.action) for t in trials} == {("litserve", "serve")}
    assert trials[0].candidate.workers == 1 and trials[0].candidate.max_batch_size == 1  # default first


def test_a_missing_java_is_unavailable_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", "/nonexistent-jdk")
    java_major.cache_clear()
    try:
        availability = get_stack("torchserve").availability()
    finally:
        java_major.cache_clear()
    assert not availability.ok
    assert (
        availability.reason.startswith("unavailable: ") and "openjdk-17-jre-headless" in availability.reason
    )


def test_all_expands_to_the_installed_stacks_and_unknown_names_are_refused() -> None:
    assert resolve_stacks(["all"])[0] == "deploybench"
    with pytest.raises(ValueError, match="unknown stack 'jboss'"):
        resolve_stacks(["jboss"])
    with pytest.raises(ValueError, match="unknown stack"):
        StudyConfig(stacks=["jboss"])


def test_stacks_command_lists_every_stack_as_json(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deploybench.cli import app

    out = tmp_path / "stacks.json"
    result = CliRunner().invoke(app, ["stacks", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = {row["stack"]: row for row in json.loads(out.read_text())}
    assert list(rows) == ["deploybench", "torchserve", "pytriton", "litserve", "rayserve"]
    assert rows["pytriton"]["protocol"] == "kserve-v2" and rows["deploybench"]["backends"] == "any"


def test_a_backend_only_another_stack_was_given_is_served_by_deploybench_too() -> None:
    summaries = [
        VariantSummary("eager", "passed", precision="fp32", images_per_s={1: 16.0}),
        VariantSummary("openvino-int8", "passed", precision="int8", images_per_s={1: 90.0}),
        VariantSummary("onnxruntime-int8", "passed", precision="int8", images_per_s={1: 70.0}),
    ]
    offers = [StackOffer("deploybench"), StackOffer("pytriton", backends=frozenset({"onnxruntime-int8"}))]
    trials = plan_trials(StudyConfig(serve_top=1, tune_top=0), summaries, cores=2, stacks=offers)
    served = {(t.candidate.stack, t.candidate.backend) for t in trials if t.action == "serve"}
    assert served == {
        ("deploybench", "eager"),
        ("deploybench", "openvino-int8"),
        ("deploybench", "onnxruntime-int8"),
        ("pytriton", "onnxruntime-int8"),
    }
    assert not [t for t in trials if t.action == "skipped"]


def test_a_zero_delay_never_reaches_torchserve_as_its_100_ms_default() -> None:
    unbatched = Candidate(backend="onnxruntime", max_batch_size=1, max_delay_ms=0.0)
    assert get_stack("torchserve").settings(unbatched)["SAGEMAKER_TS_MAX_BATCH_DELAY"] == 1


def test_the_triton_stack_is_named_for_what_runs_and_the_old_name_still_reads() -> None:
    """PyTriton runs a Python callable behind Triton, not Triton's native ONNX Runtime backend."""
    assert get_stack("pytriton").name == "pytriton"
    assert resolve_stacks(["deploybench", "triton"]) == ["deploybench", "pytriton"]
    assert StudyConfig(stacks=["triton"]).stacks == ["pytriton"]


def test_no_stack_module_shadows_a_package_the_pytriton_script_imports() -> None:
    """pytriton_app.py runs as a script, its own folder first on sys.path: a sibling module named
    like a package it imports (pytriton.py) would be imported instead of the package."""
    folder = Path(deploybench.stacks.__file__).parent
    tree = ast.parse((folder / "pytriton_app.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "pytriton" in imported
    shadowing = sorted(name for name in imported if (folder / f"{name}.py").exists())
    assert shadowing == [], f"stacks/{shadowing[0]}.py shadows the {shadowing[0]} package in pytriton_app.py"
