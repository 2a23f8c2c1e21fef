"""User handlers (inference.py with SageMaker semantics) behind a real server, one server per combination."""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.serve_support import SMALL_MODEL, Server, npy, request, serve_cli, start_server

from deploybench.inputs.payload import default_payload_path, preprocess

pytestmark = pytest.mark.slow

THREE_STEPS = """
import json

class Teapot(Exception):
    status_code = 418

def model_fn(model_dir, context):
    with open(f"{model_dir}/scale.txt") as f:
        return {"scale": float(f.read()), "dir_from_context": context.system_properties["model_dir"]}

def input_fn(body, content_type, context):
    if not content_type.startswith("text/plain"):
        raise type("Unsupported", (Exception,), {"status_code": 415})(f"cannot read {content_type}")
    if body == b"boom":
        raise RuntimeError("internal detail")
    if body == b"teapot":
        raise Teapot("short and stout")
    return float(body)

def predict_fn(data, model):
    return data * model["scale"]

def output_fn(prediction, accept, context):
    body = json.dumps({"value": prediction, "accept": accept, "ctype": context.request_content_type})
    return body, "application/json"
"""

TRANSFORM_ONLY = """
def model_fn(model_dir):
    return "prefix:"

def transform_fn(model, body, content_type, accept):
    if body == b"boom":
        raise ValueError("internal detail")
    return model + body.decode().upper()
"""

OUTPUT_ONLY = """
import numpy as np

def output_fn(prediction, accept):
    prediction = np.asarray(prediction)
    return {"shape": list(prediction.shape), "argmax": int(prediction.argmax())}
"""

MODEL_ONLY = """
import torch

def model_fn(model_dir):
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
"""

CONFLICT = """
def input_fn(body, content_type):
    return body

def transform_fn(model, body, content_type, accept):
    return body
"""


def model_dir(
    root: Path, source: str, program: str = "inference.py", extra: dict[str, str] | None = None
) -> Path:
    (root / "code").mkdir(parents=True)
    (root / "code" / program).write_text(textwrap.dedent(source))
    for name, text in (extra or {}).items():
        (root / name).write_text(text)
    return root


@pytest.fixture(scope="module")
def three_steps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("three")
    folder = model_dir(root / "model", THREE_STEPS, extra={"scale.txt": "2.5"})
    running = start_server(root / "run", str(folder), "--debug")
    yield running
    running.stop()


def test_three_step_handler_with_context(three_steps: Server) -> None:
    status, headers, body = request(f"{three_steps.url}/invocations", b"4", {"Content-Type": "text/plain"})
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"value": 10.0, "accept": "application/json", "ctype": "text/plain"}
    assert "server-timing" in headers


def test_handler_errors_carry_their_status(three_steps: Server) -> None:
    url = f"{three_steps.url}/invocations"
    assert request(url, b"4", {"Content-Type": "image/png"})[0] == 415
    status, _, body = request(url, b"teapot", {"Content-Type": "text/plain"})
    assert status == 418 and json.loads(body)["error"] == "short and stout"
    status, _, body = request(url, b"boom", {"Content-Type": "text/plain"})
    assert status == 500 and "internal detail" in body.decode()
    assert "Traceback" in "".join(json.loads(body)["traceback"])  # --debug shows it
    assert request(url, b"1", {"Content-Type": "text/plain"})[0] == 200


def test_transform_fn_from_a_model_archive_with_sagemaker_program(tmp_path: Path) -> None:
    folder = model_dir(tmp_path / "model", TRANSFORM_ONLY, program="handler.py")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=".")
    running = start_server(tmp_path / "run", str(archive), env={"SAGEMAKER_PROGRAM": "handler.py"})
    try:
        status, headers, body = request(f"{running.url}/invocations", b"abc", {"Content-Type": "text/plain"})
        assert (status, body, headers["content-type"]) == (200, b"prefix:ABC", "application/json")
        status, _, body = request(f"{running.url}/invocations", b"boom", {"Content-Type": "text/plain"})
        assert status == 500 and "Traceback" not in body.decode() and "traceback" not in json.loads(body)
    finally:
        assert running.stop() == 0


def test_output_fn_only_uses_the_built_in_model_and_input(tmp_path: Path) -> None:
    folder = model_dir(tmp_path / "model", OUTPUT_ONLY)
    running = start_server(tmp_path / "run", str(folder), "--model", SMALL_MODEL)
    try:
        status, _, body = request(
            f"{running.url}/invocations", default_payload_path().read_bytes(), {"Content-Type": "image/jpeg"}
        )
    finally:
        running.stop()
    answer = json.loads(body)
    assert status == 200 and answer["shape"] == [1, 1000] and 0 <= answer["argmax"] < 1000


def test_model_fn_only_uses_the_toolkit_input_and_output(tmp_path: Path) -> None:
    """The default output_fn encodes the prediction itself (as SageMaker's PyTorch container does);
    images go through the reference preprocessing (deploybench's addition to the default input_fn)."""
    folder = model_dir(tmp_path / "model", MODEL_ONLY)
    running = start_server(tmp_path / "run", str(folder))
    try:
        status, _, body = request(
            f"{running.url}/invocations",
            default_payload_path().read_bytes(),
            {"Content-Type": "image/jpeg", "Accept": "application/x-npy"},
        )
        json_status, _, json_body = request(
            f"{running.url}/invocations", default_payload_path().read_bytes(), {"Content-Type": "image/jpeg"}
        )
    finally:
        running.stop()
    assert status == 200 and json_status == 200
    expected = preprocess(default_payload_path().read_bytes()).mean(axis=(1, 2))[None]
    np.testing.assert_allclose(npy(body), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(json.loads(json_body), expected, rtol=1e-4, atol=1e-5)


def test_transform_fn_with_input_fn_is_a_startup_error(tmp_path: Path) -> None:
    result = serve_cli(str(model_dir(tmp_path / "model", CONFLICT)))
    assert result.returncode != 0
    assert "transform_fn cannot be combined with input_fn" in result.stderr


def test_archive_with_path_traversal_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"owned"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    result = serve_cli(str(archive))
    assert result.returncode != 0
    assert "outside the model folder" in result.stderr
    assert not (tmp_path / "escaped.txt").exists()
