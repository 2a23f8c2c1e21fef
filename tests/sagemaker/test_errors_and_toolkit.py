"""The one error-body builder, the status an exception answers with, and the SageMaker PyTorch toolkit's
defaults as deploybench runs them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch

from deploybench.sagemaker import toolkit
from deploybench.sagemaker.errors import ServeError, client_message, error_status, exception_body


class ToolkitError(Exception):
    """Shaped like sagemaker_inference.errors.BaseInferenceToolkitError."""

    def __init__(self, status_code: int, message: str, phrase: str) -> None:
        super().__init__(status_code, message, phrase)
        self.status_code, self.message, self.phrase = status_code, message, phrase


def test_clients_read_only_messages_meant_for_them() -> None:
    assert client_message(ServeError("array of shape (2,)", 400)) == "array of shape (2,)"
    hidden = client_message(RuntimeError("cannot open /opt/ml/model/secret.bin"))
    assert "secret" not in hidden and "RuntimeError" in hidden
    teapot = type("Teapot", (Exception,), {"status_code": 418})("short and stout")
    assert client_message(teapot) == "short and stout"
    assert client_message(ToolkitError(422, "bad field x", "Unprocessable")) == "bad field x"


def test_debug_bodies_add_detail_and_traceback() -> None:
    try:
        raise KeyError("/internal/path")
    except KeyError as exc:
        status, quiet = exception_body(exc, debug=False)
        _, loud = exception_body(exc, debug=True)
    assert status == 500 and "/internal/path" not in quiet.decode()
    answer = json.loads(loud)
    assert "/internal/path" in answer["detail"] and "Traceback" in "".join(answer["traceback"])
    _, body = exception_body(ServeError("bad", 400, detail="numpy said x"), debug=True)
    assert json.loads(body)["detail"] == "numpy said x"


def test_error_status_reads_the_exception() -> None:
    assert error_status(ServeError("x", 415)) == 415
    assert error_status(type("E", (Exception,), {"status": 422})()) == 422
    assert error_status(RuntimeError("x")) == 500
    assert error_status(type("E", (Exception,), {"status_code": 200})()) == 500  # not an error status


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("application/json", str),
        ("text/csv", str),
        ("text/plain", bytes),  # SageMaker's PyTorch container keeps TorchServe from decoding text/*
        ("application/json; charset=utf-8", bytes),  # the toolkit compares the whole header
        (None, bytes),
    ],
)
def test_text_bodies_reach_the_handler_as_str(content_type: str | None, kind: type) -> None:
    assert type(toolkit.text_body(b"1,2", content_type)) is kind


def test_a_text_body_that_is_not_utf8_is_400() -> None:
    with pytest.raises(ServeError) as caught:
        toolkit.text_body(b"\xff\xfe", "text/csv")
    assert caught.value.status_code == 400


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_default_input_fn_decodes_like_the_toolkit() -> None:
    from_json = toolkit.default_input_fn("[[1, 2], [3, 4]]", "application/json")
    assert from_json.dtype == torch.float32 and from_json.tolist() == [[1, 2], [3, 4]]
    from_csv = toolkit.default_input_fn("1,2\n3,4\n", "text/csv")
    assert from_csv.tolist() == [[1, 2], [3, 4]]
    from_npy = toolkit.default_input_fn(npy(np.arange(3, dtype=np.float64)), "application/x-npy")
    assert from_npy.dtype == torch.float64  # torch.from_numpy keeps the array's dtype, as on SageMaker
    buffer = io.BytesIO()
    scipy.sparse.save_npz(buffer, scipy.sparse.csr_matrix(np.eye(2)))
    assert toolkit.default_input_fn(buffer.getvalue(), "application/x-npz").tolist() == [[1, 0], [0, 1]]
    for body, content_type, status in (
        ("[" * 50_000, "application/json", 400),
        ('["a", "b"]', "application/json", 400),
        (b"abc", "text/plain", 415),
    ):
        with pytest.raises(ServeError) as caught:
            toolkit.default_input_fn(body, content_type)
        assert caught.value.status_code == status


def test_default_predict_fn_calls_eval_and_needs_no_gradients() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.9)).train()
    first = toolkit.default_predict_fn(torch.ones(1, 2), model)
    assert not model.training and not first.requires_grad
    assert torch.equal(first, toolkit.default_predict_fn(torch.ones(1, 2), model))


def test_default_output_fn_encodes_the_prediction_itself() -> None:
    prediction = torch.tensor([[1.5, 2.0]])
    assert toolkit.default_output_fn(prediction, "application/json") == (b"[[1.5, 2.0]]", "application/json")
    body, kind = toolkit.default_output_fn(prediction, "text/csv")
    assert (body, kind) == (b"1.5,2.0\n", "text/csv")
    body, kind = toolkit.default_output_fn(prediction, "application/x-npy")
    assert kind == "application/x-npy" and np.load(io.BytesIO(body)).tolist() == [[1.5, 2.0]]
    with pytest.raises(ServeError) as caught:
        toolkit.default_output_fn(prediction, "image/png")
    assert caught.value.status_code == 406


def test_returned_values_are_sent_as_torchserve_sends_them() -> None:
    assert toolkit.response_body(("a,b", "text/csv"), "application/json") == (b"a,b", "text/csv")
    assert toolkit.response_body(b"\x00", "application/x-npy") == (b"\x00", "application/x-npy")
    assert toolkit.response_body({"a": 1}, "application/json") == (b'{\n  "a": 1\n}', "application/json")
    with pytest.raises(ServeError, match="returned a ndarray"):
        toolkit.response_body(np.zeros(2), "application/json")


def test_default_model_file_is_model_pt_or_the_only_torch_file(tmp_path: Path) -> None:
    (tmp_path / "weights.pth").write_bytes(b"")
    assert toolkit.torch_model_file(tmp_path).name == "weights.pth"
    (tmp_path / "other.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"other\.pt"):
        toolkit.torch_model_file(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"")
    assert toolkit.torch_model_file(tmp_path).name == "model.pt"
