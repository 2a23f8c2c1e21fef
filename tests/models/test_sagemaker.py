"""A SageMaker archive as a model source: network from model_fn, input shape from input_fn, the
predict_fn rule, and one clear line for a model_fn whose value no compiler can take."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.sagemaker_archives import (
    DICT_MODEL_FN,
    INPUT_FN,
    MODEL_FN,
    OUTPUT_FN,
    SOFTMAX_PREDICT_FN,
    example_archive,
    sample_photos,
    small_resnet,
    write_model_folder,
)
from PIL import Image
from typer.testing import CliRunner

from deploybench.cli import app
from deploybench.config import ModelSpec
from deploybench.models.loaded import ModelLoadError
from deploybench.models.sources import load_model
from deploybench.sagemaker.handler_check import check_predict_fn
from deploybench.variants.verify import evaluate_variants, parity_set


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return example_archive(tmp_path_factory.mktemp("example"))


def test_archive_network_comes_from_model_fn_and_shape_from_input_fn(example: Path, photos: Path) -> None:
    model = load_model(ModelSpec(source=str(example), payload=photos))
    assert model.input_shape == (3, 64, 64)  # Resize(72) + CenterCrop(64) in the user's input_fn
    assert model.weights == "model_fn:model.tar.gz"
    reference = small_resnet()
    for ours, theirs in zip(model.module.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs)
    assert model.handler is not None and model.handler.replaceable, model.handler
    assert model.handler.defined == ("model_fn", "input_fn", "predict_fn", "output_fn")
    assert model.sample_inputs is not None and model.sample_inputs.shape == (3, 3, 64, 64)
    # parity runs the user's own requests first; photos reach the network through their input_fn
    inputs = parity_set(model, 8)
    assert np.array_equal(inputs[:3], model.sample_inputs) and inputs.shape == (8, 3, 64, 64)
    assert model.preprocess is not None
    assert model.preprocess(Image.new("RGB", (300, 200), "red")).shape == (3, 64, 64)


def test_a_model_folder_is_a_source_too(tmp_path: Path, photos: Path) -> None:
    folder = write_model_folder(tmp_path / "folder", MODEL_FN, INPUT_FN, OUTPUT_FN)
    model = load_model(ModelSpec(source=str(folder), payload=photos))
    assert model.handler is not None and model.handler.reason == "no predict_fn (the toolkit default)"
    assert model.handler.replaceable and model.input_shape == (3, 64, 64)


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    layers = (torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    return torch.nn.Sequential(*layers).eval()


def _only_calls(data, model):  # type: ignore[no-untyped-def]
    model.eval()
    with torch.no_grad():
        return model(data.to("cpu").float())


def _unsqueezes_and_numpy(data, model):  # type: ignore[no-untyped-def]
    with torch.inference_mode():
        return model(data.unsqueeze(0)).numpy()


def _first_row(data, model):  # type: ignore[no-untyped-def]
    return model(data.unsqueeze(0))[0]


def _softmax(data, model):  # type: ignore[no-untyped-def]
    return torch.softmax(model(data.unsqueeze(0)), dim=1)


def _twice(data, model):  # type: ignore[no-untyped-def]
    return (model(data.unsqueeze(0)) + model(data.unsqueeze(0).flip(-1))) / 2


def _normalises(data, model):  # type: ignore[no-untyped-def]
    return model((data.unsqueeze(0) - 0.5) / 0.25)


def _raises(data, model):  # type: ignore[no-untyped-def]
    raise RuntimeError("needs CUDA")


@pytest.mark.parametrize(
    ("predict_fn", "replaceable", "returns", "batch_axis", "why"),
    [
        (None, True, "tensor", True, "toolkit default"),
        (_only_calls, True, "tensor", True, "only calls the model"),
        (_unsqueezes_and_numpy, True, "ndarray", True, "only calls the model"),
        (_first_row, True, "tensor", False, "only calls the model"),
        (_softmax, False, "tensor", True, "changes the model's output"),
        (_twice, False, "tensor", True, "calls the model 2 times"),
        (_normalises, False, "tensor", True, "changes the input"),
        (_raises, False, "tensor", True, "raised RuntimeError"),
    ],
)
def test_predict_fn_rule(predict_fn, replaceable, returns, batch_axis, why) -> None:  # type: ignore[no-untyped-def]
    batched = predict_fn in (None, _only_calls)  # the others add the batch axis themselves
    data = torch.rand(1, 3, 16, 16) if batched else torch.rand(3, 16, 16)
    check = check_predict_fn(predict_fn, _net(), data, "inference.py")
    assert (check.replaceable, why in check.reason) == (replaceable, True), check
    if replaceable:
        assert (check.returns, check.batch_axis) == (returns, batch_axis)
        wrapped = check.wrap(np.zeros((1, 4), np.float32))
        assert getattr(wrapped, "shape", None) == ((1, 4) if batch_axis else (4,))


@pytest.mark.slow
def test_a_predict_fn_that_does_more_limits_the_study_to_eager(tmp_path: Path, photos: Path) -> None:
    archive = example_archive(tmp_path, MODEL_FN, INPUT_FN, SOFTMAX_PREDICT_FN, OUTPUT_FN, name="softmax")
    report = evaluate_variants(
        ModelSpec(source=str(archive), payload=photos),
        ["eager", "onnxruntime"],
        batch_sizes=(1,),
        threads=(1,),
        time_budget_s=0.5,
        cache_dir=tmp_path / "cache",
    )
    assert report.handler is not None and "changes the model's output" in report.handler
    ort = next(v for v in report.variants if v.backend == "onnxruntime")
    assert not ort.available
    assert "only your handler as is (eager) is studied" in (ort.unavailable_reason or "")
    assert report.variants[0].parity is not None and report.variants[0].parity.verdict == "reference"


def test_model_fn_returning_a_dict_is_one_clear_line(tmp_path: Path, photos: Path) -> None:
    archive = example_archive(tmp_path, DICT_MODEL_FN, INPUT_FN, name="dict")
    with pytest.raises(ModelLoadError) as caught:
        load_model(ModelSpec(source=str(archive), payload=photos))
    message = str(caught.value)
    assert "\n" not in message
    assert "model_fn returned a dict" in message and "'model'" in message
    assert "only eager can run it" in message and "onnxruntime" in message and "nn.Module" in message
    result = CliRunner().invoke(
        app, ["run", "--model", str(archive), "--payload", str(photos), "--out", str(tmp_path / "study")]
    )
    assert result.exit_code == 2
    assert "model_fn returned a dict" in result.output and "Traceback" not in result.output


def test_input_fn_of_several_shapes_is_refused(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "m", MODEL_FN, INPUT_FN)
    handler = folder / "code" / "inference.py"
    handler.write_text(handler.read_text().replace("T.CenterCrop(64),", ""))  # aspect ratio kept
    bodies = tmp_path / "bodies"
    bodies.mkdir()
    for name, size in (("a.jpg", (100, 80)), ("b.jpg", (80, 100))):
        buffer = io.BytesIO()
        Image.new("RGB", size, "blue").save(buffer, format="JPEG")
        (bodies / name).write_bytes(buffer.getvalue())
    with pytest.raises(ModelLoadError, match="several shapes"):
        load_model(ModelSpec(source=str(folder), payload=bodies))
