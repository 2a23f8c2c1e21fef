"""A SageMaker archive end to end: studied as it is (variants served behind its own handler), the
onnxruntime candidate exported, and the export served by `deploybench serve` answering exactly as
the study's variant does. Throughput of the round trip is a bench (bench/export_roundtrip.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import psutil
import pytest
import yaml
from helpers.sagemaker_archives import (
    MODEL_FN,
    OUTPUT_FN,
    PIL_INPUT_FN,
    TRANSFORMS_PREDICT_FN,
    example_archive,
    sample_photos,
)
from helpers.serve_support import Server, request, start_server

from deploybench.results import TrialRecord

pytestmark = pytest.mark.slow

QUICK_STUDY = {
    "name": "sagemaker-example",
    "content_type": "image/jpeg",
    "backends": ["eager", "onnxruntime", "openvino"],
    "serve_top": 2,
    "serve_within": None,  # both runtimes served, however far apart: the export of each is tested
    "tune_top": 0,
    "variant_batch_sizes": [1],
    "timing_budget_s": 0.3,
    "load": {
        "concurrency_levels": [1],
        "include_concurrency": [],
        "window_s": 0.5,
        "min_window_requests": 5,
        "max_windows": 3,
        "warmup_s": 0.2,
        "point_max_s": 3,
    },
    "machine": {"label": "ci", "price_per_hour": 0.17},
}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "deploybench.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


def answers(server: Server, photos: Path) -> list[list[dict[str, object]]]:
    out = []
    for path in sorted(photos.iterdir()):
        url, body = f"{server.url}/invocations", path.read_bytes()
        status, _, answer = request(url, body, {"Content-Type": "image/jpeg"})
        assert status == 200, answer
        out.append(json.loads(answer))
    return out


def served_answers(tmp: Path, photos: Path, *args: str, env: dict[str, str] | None = None) -> list:  # type: ignore[type-arg]
    server = start_server(tmp, *args, env=env)
    try:
        return answers(server, photos)
    finally:
        server.stop()


def run_study(tmp: Path, archive: Path, photos: Path) -> dict[str, TrialRecord]:
    """The quick study; returns the served trials by backend, each checked to run behind the handler."""
    study_file, out = tmp / "study.yaml", tmp / "study"
    config = {**QUICK_STUDY, "model": {"source": str(archive)}, "payload": str(photos)}
    study_file.write_text(yaml.safe_dump(config))
    run = cli("run", str(study_file), "--out", str(out), "--cache-dir", str(tmp / "cache"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "every backend serves behind your unchanged code" in " ".join(run.stdout.split())
    lines = (out / "trials.jsonl").read_text().splitlines()
    trials = [TrialRecord.model_validate_json(line) for line in lines]
    served = {t.candidate.backend: t for t in trials if t.status == "ok"}
    assert {"eager", "onnxruntime", "openvino"} <= set(served), [(t.trial_id, t.reason) for t in trials]
    logs = [line for path in (out / "logs").glob("*.log") for line in path.read_text().splitlines()]
    for backend in ("onnxruntime", "openvino"):  # each variant answered through the user's own handler
        ready = [line for line in logs if f"backend={backend}," in line]
        assert ready and "handler=inference.py" in ready[0], ready
    return served


def toolkit_jvms() -> list[str]:
    """TorchServe JVMs that the toolkit runner started (their config lies in its scratch folder)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if "org.pytorch.serve.ModelServer" in line and "deploybench-sagemaker-" in line:
            found.append(f"{proc.pid} {line[:120]}")
    return found


def read_member(archive: Path, name: str) -> str:
    with tarfile.open(archive) as tar:
        return tar.extractfile(name).read().decode()  # type: ignore[union-attr]


def test_archive_is_studied_exported_and_served(tmp_path: Path) -> None:
    """The most common public shape: PIL in input_fn, torchvision transforms in predict_fn."""
    functions = (MODEL_FN, PIL_INPUT_FN, TRANSFORMS_PREDICT_FN, OUTPUT_FN)
    archive, photos, cache = (
        example_archive(tmp_path, *functions),
        sample_photos(tmp_path / "photos"),
        tmp_path / "cache",
    )
    trial_id = run_study(tmp_path, archive, photos)["onnxruntime"].trial_id
    exported = tmp_path / "exported.tar.gz"
    done = cli("export", str(tmp_path / "study"), "--candidate", trial_id, "--out", str(exported),
               "--cache-dir", str(cache), "--target", "sagemaker-pytorch", "--no-round-trip")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "from the artifact cache" in done.stdout
    with tarfile.open(exported) as tar:
        names = set(tar.getnames())
    generated = {"deploybench/model.onnx", "code/inference.py", "code/deploybench_standin.py"}
    assert generated | {"code/user_inference.py", "code/requirements.txt", "model.pth"} <= names
    handler = read_member(exported, "code/inference.py")
    assert not re.search(r"^\s*(import|from) deploybench(\.|\s)", handler, re.MULTILINE)  # the package
    assert "onnxruntime==" in read_member(exported, "code/requirements.txt")
    readme = read_member(exported, "README.md")
    for setting in ("SAGEMAKER_MODEL_SERVER_WORKERS=1", "SAGEMAKER_TS_MAX_WORKERS=1", "OMP_NUM_THREADS=2"):
        assert setting in readme

    expected = served_answers(
        tmp_path / "variant", photos, str(archive), "--model", str(archive), "--backend", "onnxruntime",
        "--payload", str(photos), "--threads", "2", "--cache-dir", str(cache),
    )  # fmt: skip
    # served as the SageMaker PyTorch container serves it: TorchServe, started by AWS's toolkit
    got = served_answers(tmp_path / "exported", photos, str(exported), env={"OMP_NUM_THREADS": "2"})
    started = (tmp_path / "exported" / "stdout.txt").read_text()
    assert "the SageMaker PyTorch toolkit runs TorchServe" in started
    assert not toolkit_jvms(), "stopping deploybench serve left TorchServe's JVM running"
    assert [[a["class"] for a in answer] for answer in got] == [[a["class"] for a in e] for e in expected]
    for answer, reference in zip(got, expected, strict=True):
        for mine, theirs in zip(answer, reference, strict=True):
            assert mine["probability"] == pytest.approx(theirs["probability"], abs=1e-6)

    # The same candidate for AWS's Ray Serve container: config.yaml carries the knobs, deploybench serve
    # runs it with Ray Serve on loopback, and it answers as the SageMaker PyTorch archive does.
    on_ray = tmp_path / "rayserve.tar.gz"
    done = cli("export", str(tmp_path / "study"), "--candidate", trial_id, "--out", str(on_ray),
               "--cache-dir", str(cache), "--target", "sagemaker-rayserve", "--no-round-trip")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(read_member(on_ray, "config.yaml"))
    deployment = config["applications"][0]["deployments"][0]
    assert (deployment["num_replicas"], deployment["ray_actor_options"]["num_cpus"]) == (1, 2)
    assert deployment["user_config"] == {"max_batch_size": 1, "batch_wait_timeout_s": 0.0}
    assert yaml.safe_load(read_member(on_ray, "rayservice.yaml"))["kind"] == "RayService"
    assert not re.search(
        r"^\s*(import|from) deploybench(\.|\s)", read_member(on_ray, "deployment.py"), re.MULTILINE
    )
    on_ray_answers = served_answers(tmp_path / "rayserve", photos, str(on_ray))
    assert [[a["class"] for a in answer] for answer in on_ray_answers] == [
        [a["class"] for a in e] for e in got
    ]
