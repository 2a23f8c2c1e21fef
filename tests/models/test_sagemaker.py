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
    READS_FC_PREDICT_FN,
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
from deploybench.sagemaker.handler_check import HandlerFailedError, check_handler
from deploybench.sagemaker.toolkit import default_predict_fn
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
    assert model.handler is not None and "stands in" in model.handler.reason
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


def _softmax_topk_dict(data, model):  # type: ignore[no-untyped-def]
    probabilities = torch.softmax(model(data.unsqueeze(0)), dim=1)[0]
    top = torch.topk(probabilities, 2)
    return {"labels": [f"c{i}" for i in top.indices.tolist()], "scores": top.values.tolist()}


def _twice(data, model):  # type: ignore[no-untyped-def]
    return (model(data.unsqueeze(0)) + model(data.unsqueeze(0).flip(-1))) / 2


def _normalises_and_reads_device(data, model):  # type: ignore[no-untyped-def]
    device = next(model.parameters()).device
    return model(((data.unsqueeze(0) - 0.5) / 0.25).to(device))


def _several_images(data, model):  # type: ignore[no-untyped-def]
    return model(torch.stack([data, data.flip(-1), data * 0.5]))


def _reads_a_layer(data, model):  # type: ignore[no-untyped-def]
    return model[0](data.unsqueeze(0)).mean((2, 3))


def _reads_a_weight(data, model):  # type: ignore[no-untyped-def]
    return model(data.unsqueeze(0)) * model.state_dict()["0.bias"].mean()


def _half(data, model):  # type: ignore[no-untyped-def]
    return model.to(torch.float16)(data.unsqueeze(0).half()).float()


def _keyword(data, model):  # type: ignore[no-untyped-def]
    return model(input=data.unsqueeze(0))


def _raises(data, model):  # type: ignore[no-untyped-def]
    raise RuntimeError("needs CUDA")


def _catches_the_refusal(data, model):  # type: ignore[no-untyped-def]
    try:
        return model.half()(data.unsqueeze(0).half()).float()
    except RuntimeError:
        return model(data.unsqueeze(0))


@pytest.mark.parametrize(
    ("predict_fn", "replaceable", "why", "calls", "rows"),
    [
        (None, True, "stands in", 1, 1),
        (_only_calls, True, "stands in", 1, 1),
        (_unsqueezes_and_numpy, True, "stands in", 1, 1),
        (_softmax_topk_dict, True, "stands in", 1, 1),
        (_twice, True, "stands in", 2, 1),
        (_normalises_and_reads_device, True, "stands in", 1, 1),
        (_several_images, True, "stands in", 1, 3),
        (_reads_a_layer, False, "not subscriptable", 0, 0),
        (_reads_a_weight, False, "state_dict()", 0, 0),
        (_half, False, "cast to torch.float16", 0, 0),
        (_keyword, False, "not one tensor", 0, 0),
        (_catches_the_refusal, False, "half()", 0, 0),
    ],
)
def test_the_stand_in_rule(predict_fn, replaceable, why, calls, rows) -> None:  # type: ignore[no-untyped-def]
    data = torch.rand(1, 3, 16, 16) if predict_fn in (None, _only_calls) else torch.rand(3, 16, 16)
    predict = predict_fn or default_predict_fn
    check, samples = check_handler(
        lambda model, body: predict(data, model), _net(), [b""], "inference.py", ()
    )
    assert (check.replaceable, why in check.reason) == (replaceable, True), check
    if replaceable:
        assert check.input_shape == (3, 16, 16) and (check.calls_per_request, check.rows_per_call) == (
            calls,
            rows,
        )
        assert samples is not None and samples.shape == (calls * rows, 3, 16, 16)
    else:
        assert samples is None and "only your handler as is (eager) is studied" in (check.limit or "")


def test_a_handler_answering_differently_with_the_stand_in_is_refused() -> None:
    def by_type(data, model):  # type: ignore[no-untyped-def]
        return {"own": isinstance(model, torch.nn.Sequential), "logits": model(data)}

    check, _ = check_handler(
        lambda model, body: by_type(torch.rand(1, 3, 8, 8), model), _net(), [b""], "x", ()
    )
    assert not check.replaceable and "answers differently" in check.reason and "0 of 1 texts" in check.reason


def test_a_handler_failing_with_its_own_network_is_a_load_error_not_a_refusal() -> None:
    with pytest.raises(HandlerFailedError, match="needs CUDA"):
        check_handler(
            lambda model, body: _raises(torch.rand(3, 8, 8), model), _net(), [b""], "inference.py", ()
        )


def test_what_a_variant_cannot_take_is_refused() -> None:
    flat, row = torch.nn.Sequential(torch.nn.Linear(12, 2)), torch.rand(1, 12)
    check, _ = check_handler(lambda model, body: model(row), flat, [b""], "inference.py", ())
    assert not check.replaceable and "the backends take images (N, C, H, W)" in check.reason
    shapes = {b"a": torch.rand(1, 3, 8, 8), b"b": torch.rand(1, 3, 8, 10)}
    check, _ = check_handler(
        lambda model, body: model(shapes[body]), _net(), [b"a", b"b"], "inference.py", ()
    )
    assert not check.replaceable and "several shapes" in check.reason


@pytest.mark.slow
def test_a_handler_reading_the_networks_layers_limits_the_study_to_eager(
    tmp_path: Path, photos: Path
) -> None:
    archive = example_archive(tmp_path, MODEL_FN, INPUT_FN, READS_FC_PREDICT_FN, OUTPUT_FN, name="layers")
    report = evaluate_variants(
        ModelSpec(source=str(archive), payload=photos),
        ["eager", "onnxruntime"],
        batch_sizes=(1,),
        threads=(1,),
        time_budget_s=0.5,
        cache_dir=tmp_path / "cache",
    )
    assert report.handler is not None and "reads the network's 'blocks'" in report.handler
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


def test_inputs_of_several_shapes_leave_the_handler_as_is(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "m", MODEL_FN, INPUT_FN)
    handler = folder / "code" / "inference.py"
    handler.write_text(handler.read_text().replace("T.CenterCrop(64),", ""))  # aspect ratio kept
    bodies = tmp_path / "bodies"
    bodies.mkdir()
    for name, size in (("a.jpg", (100, 80)), ("b.jpg", (80, 100))):
        buffer = io.BytesIO()
        Image.new("RGB", size, "blue").save(buffer, format="JPEG")
        (bodies / name).write_bytes(buffer.getvalue())
    model = load_model(ModelSpec(source=str(folder), payload=bodies))  # never a stack of unequal images
    assert model.handler is not None and not model.handler.replaceable
    assert "several shapes [(3, 72, 90), (3, 90, 72)]" in model.handler.reason and model.sample_inputs is None
