"""A variant behind the user's handler, as a worker builds it: their code unchanged around a stand-in
for the network, answers in their own format, a batch's network calls run as one predict, and a
refusal (never a silent swap) when the handler needs what a variant cannot give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.sagemaker_archives import (
    BASE64_LIST_INPUT_FN,
    BASE64_LIST_PREDICT_FN,
    INPUT_FN,
    JSON_OUTPUT_FN,
    MODEL_FN,
    OUTPUT_FN,
    PIL_INPUT_FN,
    READS_FC_PREDICT_FN,
    TOPK_DICT_PREDICT_FN,
    TORCHSCRIPT_MODEL_FN,
    TRANSFORM_FN,
    TRANSFORMS_PREDICT_FN,
    TTA_PREDICT_FN,
    base64_request,
    sample_photos,
    write_model_folder,
    write_torchscript,
)

from deploybench.config import ModelSpec, ServerConfig
from deploybench.models.sagemaker import open_handler, run_model_fn
from deploybench.sagemaker.standin import NetworkStandIn
from deploybench.serve.protocol import WorkItem
from deploybench.serve.settings import ServeSettings
from deploybench.serve.user import UserPipeline, resolve_functions
from deploybench.serve.variant_handler import VariantRefusedError, behind_handler

pytestmark = pytest.mark.slow  # builds an ONNX export of the example network

SHAPES = {
    "pil_then_transforms": ((MODEL_FN, PIL_INPUT_FN, TRANSFORMS_PREDICT_FN, OUTPUT_FN), "image/jpeg", 1),
    "softmax_topk_dict": ((MODEL_FN, INPUT_FN, TOPK_DICT_PREDICT_FN, JSON_OUTPUT_FN), "image/jpeg", 1),
    "base64_list": (
        (MODEL_FN, BASE64_LIST_INPUT_FN, BASE64_LIST_PREDICT_FN, JSON_OUTPUT_FN),
        "application/json",
        1,
    ),
    "transform_fn_only": ((MODEL_FN, TRANSFORM_FN), "image/jpeg", 1),
    "torchscript_model_fn": ((TORCHSCRIPT_MODEL_FN, INPUT_FN, TTA_PREDICT_FN, OUTPUT_FN), "image/jpeg", 2),
}


def _folder(tmp_path: Path, functions: tuple[str, ...]) -> Path:
    folder = write_model_folder(tmp_path / "m", *functions)
    return write_torchscript(folder)


def _bodies(photos: Path, content_type: str) -> list[bytes]:
    jpegs = [path.read_bytes() for path in sorted(photos.glob("*.jpg"))]
    if content_type == "application/json":
        return [base64_request(*jpegs[:2]), base64_request(jpegs[2]), base64_request(*jpegs)]
    return jpegs


def _pipeline(folder: Path, payload: Path, backend: str, content_type: str, cache: Path, batch: int):  # type: ignore[no-untyped-def]
    settings = ServeSettings(
        server=ServerConfig(backend=backend, threads=1, max_batch_size=batch, max_delay_ms=2),
        model=ModelSpec(source=str(folder), payload=payload, content_type=content_type),
        model_dir=folder,
        cache_dir=cache,
    )
    handler = open_handler(folder, str(folder))
    handler.context.system_properties["batch_size"] = batch
    model = run_model_fn(handler, str(folder))
    functions = resolve_functions(handler.module, handler.context)
    model, gatherer, info = behind_handler(settings, handler.module, model, handler.context)
    pipeline = UserPipeline(functions, model, handler.context, "application/json", False, gatherer)
    return pipeline, gatherer, info


def _answers(pipeline: UserPipeline, bodies: list[bytes], content_type: str) -> list[object]:
    items = [WorkItem(n, content_type, "application/json", body) for n, body in enumerate(bodies)]
    results = pipeline.run(items)
    assert all(r.status == 200 for r in results), [r.body for r in results]
    return [json.loads(r.body) for r in results]


def _form(answer: object) -> object:
    """The answer with every number and text blanked: what must match the user's own answers."""
    if isinstance(answer, dict):
        return {key: _form(value) for key, value in answer.items()}
    if isinstance(answer, list):
        return [_form(value) for value in answer]
    return type(answer).__name__


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_handler_shape_serves_a_variant_behind_the_users_code(tmp_path: Path, shape: str) -> None:
    functions, content_type, calls = SHAPES[shape]
    photos = sample_photos(tmp_path / "photos")
    payload = tmp_path / "payload"
    payload.mkdir()
    bodies = _bodies(photos, content_type)
    (payload / ("request.json" if content_type == "application/json" else "request.jpg")).write_bytes(
        bodies[0]
    )
    folder = _folder(tmp_path, functions)
    own, _, own_info = _pipeline(folder, payload, "eager", content_type, tmp_path / "cache", 4)
    assert own_info["network"] == "yours (the handler as is)"
    pipeline, gatherer, info = _pipeline(folder, payload, "onnxruntime", content_type, tmp_path / "cache", 4)
    assert isinstance(pipeline.model, NetworkStandIn) and info["backend"] == "onnxruntime", info
    assert "serves behind your unchanged code" in info["network"]
    expected = _answers(own, bodies, content_type)
    got = _answers(pipeline, bodies, content_type)
    assert [_form(a) for a in got] == [_form(a) for a in expected]  # the user's format, untouched
    assert gatherer is not None and gatherer.batches == calls  # every request's call met in one predict


def test_a_handler_reading_the_networks_layers_refuses_the_variant(tmp_path: Path) -> None:
    photos = sample_photos(tmp_path / "photos")
    folder = write_model_folder(tmp_path / "m", MODEL_FN, INPUT_FN, READS_FC_PREDICT_FN, OUTPUT_FN)
    with pytest.raises(VariantRefusedError, match=r"reads the network's 'blocks'.*--backend eager"):
        _pipeline(folder, photos, "onnxruntime", "image/jpeg", tmp_path / "cache", 1)
    pipeline, gatherer, info = _pipeline(folder, photos, "eager", "image/jpeg", tmp_path / "cache", 1)
    assert gatherer is None and not isinstance(pipeline.model, NetworkStandIn)
    assert info["network"] == "yours (the handler as is)"
