"""What `deploybench export` writes besides the round trip: the built-in vision pipeline inlined (it
answers exactly like deploybench's own server code on the same variant), and a winning eager
candidate of a SageMaker archive exported as the user's own archive with the README added."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import TINY
from helpers.report_factory import make_trial, write_study
from helpers.sagemaker_archives import example_archive, sample_photos

from deploybench.backends.build import build_variant
from deploybench.config import ModelSpec
from deploybench.export import export_candidate
from deploybench.inputs.payload import default_payload_path
from deploybench.sagemaker import codecs


def _study(root: Path, trials: list, model: dict[str, object], **extra: object) -> Path:  # type: ignore[type-arg]
    write_study(root, trials)
    config = {"name": "t", "model": model, "machine": {"label": "ci", "price_per_hour": 0.17}, **extra}
    (root / "study.yaml").write_text(yaml.safe_dump(config))
    return root


def _import_handler(folder: Path) -> object:
    spec = importlib.util.spec_from_file_location(
        "exported_handler_under_test", folder / "code" / "inference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "files"),
    [
        ("onnxruntime", {"model.onnx"}),
        ("openvino", {"model.xml", "model.bin"}),
        ("torchscript", {"model.pt"}),
    ],
)
def test_builtin_pipeline_is_inlined_and_answers_like_deploybench(
    tmp_path: Path, backend: str, files: set[str]
) -> None:
    trials = [make_trial("eager", capacity_rps=16), make_trial(backend, capacity_rps=25)]
    study = _study(tmp_path / "study", trials, {"source": TINY, "weights": "random"})
    out = tmp_path / "m.tar.gz"
    result = export_candidate(study, out, cache_dir=tmp_path / "cache", target="sagemaker-pytorch")
    assert (result.backend, result.runtime, result.env["OMP_NUM_THREADS"]) == (backend, backend, "2")
    assert files <= set(result.files) and "code/labels.json" not in result.files  # an entry point: no labels
    assert result.artifact.startswith("rebuilt")  # this cache never held it: said so
    folder = tmp_path / "unpacked"
    with tarfile.open(result.archive) as tar:
        tar.extractall(folder, filter="data")
    handler = _import_handler(folder)
    model = handler.model_fn(str(folder))  # type: ignore[attr-defined]
    body = default_payload_path().read_bytes()
    logits = handler.predict_fn(handler.input_fn(body, "image/jpeg"), model)  # type: ignore[attr-defined]
    answer, content_type = handler.output_fn(logits, "application/json")  # type: ignore[attr-defined]

    spec = ModelSpec(source=TINY, weights="random")
    variant, loaded = build_variant(spec, backend, threads=2, cache_dir=tmp_path / "cache")
    image = np.empty((3, 224, 224), np.float32)
    codecs.decode_into(body, "image/jpeg", image)
    reference = variant.predict(image[None])
    expected = json.loads(codecs.encode_output(reference[0], codecs.JSON, loaded.labels, 5))
    got = json.loads(answer)
    assert content_type == codecs.JSON
    assert [p["index"] for p in got["predictions"]] == [p["index"] for p in expected["predictions"]]
    scores = [p["score"] for p in expected["predictions"]]
    assert [p["score"] for p in got["predictions"]] == pytest.approx(scores, rel=1e-5)
    raw, kind = handler.output_fn(logits, "application/x-npy")  # type: ignore[attr-defined]
    assert kind == codecs.NPY
    np.testing.assert_allclose(np.load(io.BytesIO(raw)), reference[0], rtol=1e-5, atol=1e-5)


def test_an_eager_winner_exports_the_users_own_archive(tmp_path: Path) -> None:
    archive, photos = example_archive(tmp_path), sample_photos(tmp_path / "photos")
    trials = [make_trial("eager", capacity_rps=30), make_trial("onnxruntime", capacity_rps=25)]
    study = _study(tmp_path / "study", trials, {"source": str(archive)}, payload=str(photos))
    result = export_candidate(study, tmp_path / "m.tar.gz", target="sagemaker-pytorch")
    assert result.backend == "eager" and result.runtime is None
    with tarfile.open(result.archive) as tar, tarfile.open(archive) as original:
        names = set(tar.getnames())
        ours = tar.extractfile("code/inference.py").read()  # type: ignore[union-attr]
        theirs = original.extractfile("code/inference.py").read()  # type: ignore[union-attr]
        readme = tar.extractfile("README.md").read().decode()  # type: ignore[union-attr]
    assert {"model.pth", "code/inference.py", "README.md", "deploybench-export.json"} <= names
    assert ours == theirs
    assert "SAGEMAKER_MODEL_SERVER_WORKERS=1" in readme and f"{result.throughput_rps:.1f} req/s" in readme


@pytest.mark.slow
def test_an_int8_winner_of_a_random_weight_study_exports_through_the_studys_own_gate(tmp_path: Path) -> None:
    """Random weights cannot show int8 rounding against the trained limits, so the study judged its
    int8 variants on the trained stand-in; export re-checks with that same two-part gate, and the
    default study's int8 winner exports."""
    trials = [make_trial("eager", capacity_rps=16), make_trial("openvino-int8", "int8", capacity_rps=60)]
    model = {"source": "torchvision:mobilenet_v3_small", "weights": "random"}  # the tiny study's network
    study = _study(tmp_path / "study", trials, model)
    out = tmp_path / "m.tar.gz"
    result = export_candidate(study, out, cache_dir=tmp_path / "cache", target="sagemaker-pytorch")
    assert (result.backend, result.precision) == ("openvino-int8", "int8")
    assert "re-checked on the exported artifact: passed, judged as in the study on the trained stand-in" in (
        result.parity
    )


def test_the_rayserve_target_refuses_what_ray_serve_cannot_run_as_measured() -> None:
    from deploybench.config import ModelSpec, RuntimeKnobs
    from deploybench.export.rayserve import config_yaml, rayservice_yaml, refusal
    from deploybench.models.loaded import LoadedModel
    from deploybench.results import Candidate

    model = LoadedModel(None, ModelSpec(), (3, 224, 224), "random", None, "f")
    batched = Candidate(backend="openvino-int8", workers=2, threads=1, max_batch_size=4, max_delay_ms=2.5)
    assert refusal(model, batched) is None  # the built-in pipeline: @serve.batch runs the batching
    streams = batched.model_copy(update={"runtime": RuntimeKnobs(streams=2)})
    assert "runtime knobs only deploybench's server sets: streams" in (refusal(model, streams) or "")
    # Ray Serve's own schema reads the files: the knobs as Ray sees them, not as we wrote them
    schema = pytest.importorskip("ray.serve.schema")
    config = schema.ServeDeploySchema.model_validate(yaml.safe_load(config_yaml(batched, "trial")))
    deployment = config.applications[0].deployments[0]
    assert (deployment.num_replicas, deployment.ray_actor_options.num_cpus) == (2, 1.0)
    assert deployment.user_config == {"max_batch_size": 4, "batch_wait_timeout_s": 0.0025}
    assert config.applications[0].runtime_env["env_vars"]["OMP_NUM_THREADS"] == "1"
    service = yaml.safe_load(rayservice_yaml(batched, "trial", "deploybench-x"))
    served = schema.ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))
    assert served.applications[0].deployments[0].num_replicas == 2
    assert service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["rayStartParams"]["num-cpus"] == "2"


def test_the_traffic_plans_policies_go_beside_the_exported_winner(tmp_path: Path) -> None:
    """`report --traffic` derived autoscaling numbers for the winner: its export carries the policies."""
    archive, photos = example_archive(tmp_path), sample_photos(tmp_path / "photos")
    trials = [make_trial("eager", capacity_rps=30), make_trial("onnxruntime", capacity_rps=25)]
    study = _study(tmp_path / "study", trials, {"source": str(archive)}, payload=str(photos))
    numbers = {
        "candidate": "eager",
        "target_rps_per_instance": 20.0,
        "mean_latency_ms": 50.0,
        "min_instances": 1,
        "max_instances": 4,
        "reaction_s": 180,
        "launch_s": 120,
        "scale_in_s": 300,
        "metric_period_s": 60,
    }
    (study / "autoscaling").mkdir()
    (study / "autoscaling" / "policy-numbers.json").write_text(json.dumps({trials[0].trial_id: numbers}))
    result = export_candidate(study, tmp_path / "m.tar.gz", target="sagemaker-pytorch")
    with tarfile.open(result.archive) as tar:
        names = set(tar.getnames())
        sagemaker = json.loads(tar.extractfile("autoscaling/sagemaker-autoscaling.json").read())  # type: ignore[union-attr]
    assert (
        len([name for name in names if name.startswith("autoscaling/")]) == 4
    )  # SageMaker, Ray, KServe, HPA
    assert sagemaker["RegisterScalableTarget"]["MaxCapacity"] == 4
    assert any("autoscaling/" in note for note in result.notes)
