"""A variant behind the user's handler, as a worker builds it: their input_fn / output_fn around the
variant's predict, and a refusal (never a silent swap) when their predict_fn does more."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.sagemaker_archives import (
    INPUT_FN,
    MODEL_FN,
    OUTPUT_FN,
    PREDICT_FN,
    SOFTMAX_PREDICT_FN,
    sample_photos,
    write_model_folder,
)

from deploybench.config import ModelSpec, ServerConfig
from deploybench.models.sagemaker import open_handler, run_model_fn
from deploybench.serve.protocol import WorkItem
from deploybench.serve.settings import ServeSettings
from deploybench.serve.user import UserPipeline, resolve_functions
from deploybench.serve.variant_handler import VariantRefusedError, behind_handler

pytestmark = pytest.mark.slow  # builds an ONNX export of the example network


def _prepared(folder: Path, photos: Path, backend: str, cache: Path):  # type: ignore[no-untyped-def]
    settings = ServeSettings(
        server=ServerConfig(backend=backend, threads=1),
        model=ModelSpec(source=str(folder), payload=photos),
        model_dir=folder,
        cache_dir=cache,
    )
    handler = open_handler(folder, str(folder))
    model = run_model_fn(handler, str(folder))
    functions = resolve_functions(handler.module, handler.context)
    return behind_handler(settings, handler.module, functions, model, handler.context), handler


def test_the_variant_answers_through_the_users_own_functions(tmp_path: Path) -> None:
    photos = sample_photos(tmp_path / "photos")
    folder = write_model_folder(tmp_path / "m", MODEL_FN, INPUT_FN, PREDICT_FN, OUTPUT_FN)
    (functions, model, info), handler = _prepared(folder, photos, "onnxruntime", tmp_path / "cache")
    assert info["backend"] == "onnxruntime" and "only calls the model" in info["predict_fn"]
    assert functions.input_fn is handler.module.input_fn and functions.output_fn is handler.module.output_fn
    pipeline = UserPipeline(functions, model, handler.context, "application/json", False)
    body = (photos / "a_cat.jpg").read_bytes()
    [result] = pipeline.run([WorkItem(0, "image/jpeg", "application/json", body)])
    assert result.status == 200, result.body
    answer = json.loads(result.body)  # the user's output_fn: their format, not deploybench's
    assert len(answer) == 5 and set(answer[0]) == {"class", "probability"}


def test_a_predict_fn_that_does_more_refuses_the_variant(tmp_path: Path) -> None:
    photos = sample_photos(tmp_path / "photos")
    folder = write_model_folder(tmp_path / "m", MODEL_FN, INPUT_FN, SOFTMAX_PREDICT_FN, OUTPUT_FN)
    with pytest.raises(VariantRefusedError, match=r"predict_fn changes the model.s output.*--backend eager"):
        _prepared(folder, photos, "onnxruntime", tmp_path / "cache")
    (functions, _, info), handler = _prepared(folder, photos, "eager", tmp_path / "cache")
    assert (
        functions.predict_fn is handler.module.predict_fn
        and info["predict_fn"] == "yours (the handler as is)"
    )
