"""SageMaker-shaped handlers (tests/e2e/sagemaker_examples) packed as model.tar.gz and served unchanged.

Each test packs one example with small weights at the archive root, starts `deploybench serve ARCHIVE`
and checks the answers against the same network run here, plus the SageMaker rules around it: text
bodies as str, defaults of the PyTorch toolkit, SAGEMAKER_PROGRAM, requirements.txt, start-up errors.
"""

from __future__ import annotations

import http.client
import io
import json
import runpy
import shutil
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers.serve_support import Server, assert_no_internals, npy, request, serve_cli, start_server

from deploybench.inputs.payload import default_payload_path

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).parent / "sagemaker_examples"
Artifacts = Callable[[Path], None]


def pack(tmp: Path, example: str, artifacts: Artifacts | None = None) -> Path:
    """model.tar.gz with the example's code/ as is, plus what `artifacts` writes at the root."""
    root = tmp / "model"
    shutil.copytree(EXAMPLES / example / "code", root / "code")
    if artifacts is not None:
        artifacts(root)
    archive = tmp / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
    return archive


def example_namespace(example: str, module: str = "inference") -> dict[str, Any]:
    """The example module's globals, run here so the test builds the very same network."""
    code = EXAMPLES / example / "code"
    sys.path.insert(0, str(code))
    try:
        return runpy.run_path(str(code / f"{module}.py"), run_name=f"example_{module}")
    finally:
        sys.path.remove(str(code))


def save_state(net: torch.nn.Module, name: str = "model.pth") -> Artifacts:
    return lambda root: torch.save(net.state_dict(), root / name)


def post(server: Server, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    return request(f"{server.url}/invocations", body, headers)


def test_model_fn_only_uses_the_pytorch_toolkit_defaults(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = example_namespace("mnist_model_fn_only", "mnist")["Net"]()
    archive = pack(tmp_path, "mnist_model_fn_only", save_state(net))
    env = {"SAGEMAKER_PROGRAM": "mnist", "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}
    server = start_server(tmp_path / "run", str(archive), env=env)
    batch = np.random.default_rng(0).normal(size=(2, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(batch)).numpy()
    body = json.dumps(batch.tolist()).encode()
    try:
        as_json = [post(server, body, {"Content-Type": "application/json", "Accept": "application/json"})]
        as_json.append(post(server, body, {"Content-Type": "application/json", "Accept": "application/json"}))
        as_csv = post(server, body, {"Content-Type": "application/json"})  # no Accept: the env default
        as_npy = post(
            server, npy_bytes(batch), {"Content-Type": "application/x-npy", "Accept": "application/x-npy"}
        )
    finally:
        server.stop()
    for status, headers, answer in as_json:  # model.eval() was called: dropout is off, answers repeat
        assert (status, headers["content-type"]) == (200, "application/json"), answer
        np.testing.assert_allclose(np.array(json.loads(answer)), expected, rtol=1e-5, atol=1e-6)
    assert as_csv[0] == 200 and as_csv[1]["content-type"] == "text/csv"
    np.testing.assert_allclose(
        np.loadtxt(io.StringIO(as_csv[2].decode()), delimiter=","), expected, rtol=1e-5
    )
    assert as_npy[0] == 200
    np.testing.assert_allclose(npy(as_npy[2]), expected, rtol=1e-5, atol=1e-6)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def post_without_content_type(server: Server, body: bytes) -> tuple[int, bytes]:
    """http.client sends no Content-Type unless told (urllib would add a form type)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", "/invocations", body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_four_functions_with_context_dataclass_and_custom_attributes(tmp_path: Path) -> None:
    archive = pack(
        tmp_path, "four_functions_context", lambda root: (root / "factor.json").write_text('{"factor": 2.5}')
    )
    server = start_server(tmp_path / "run", str(archive))
    headers = {"Content-Type": "application/json", "X-Amzn-SageMaker-Custom-Attributes": "trace=abc"}
    try:
        status, answer_headers, body = post(server, b'{"values": [1, 2]}', headers)
        bare_status, bare_body = post_without_content_type(server, b'{"values": [4]}')
        bad_status, _, bad_body = post(server, b"x", {"Content-Type": "text/plain"})
    finally:
        server.stop()
    assert status == 200, body
    assert json.loads(body) == {
        "scaled": [2.5, 5.0],
        "body_type": "str",  # application/json reaches input_fn as str
        "content_type": "application/json",
        "custom_attributes": "trace=abc",
    }
    assert answer_headers["x-amzn-sagemaker-custom-attributes"] == "echo=trace=abc"
    assert bare_status == 200 and json.loads(bare_body)["content_type"] is None
    assert bad_status == 500 and "unsupported content type" not in bad_body.decode()
    assert_no_internals(bad_body)


def test_pil_torchvision_image_handler(tmp_path: Path) -> None:
    namespace = example_namespace("pil_image_classifier")
    torch.manual_seed(1)
    net = namespace["build_net"]().eval()
    server = start_server(tmp_path / "run", str(pack(tmp_path, "pil_image_classifier", save_state(net))))
    image = default_payload_path().read_bytes()
    try:
        status, _, body = post(server, image, {"Content-Type": "application/x-image"})
    finally:
        server.stop()
    expected = namespace["predict_fn"](namespace["input_fn"](image, "application/x-image"), net)[0]
    answer = json.loads(body)
    assert status == 200, body
    np.testing.assert_allclose(answer["probabilities"], expected.numpy(), rtol=1e-5)
    assert answer["label"] == namespace["CLASSES"][int(expected.argmax())]


def test_csv_transform_fn_with_the_default_torchscript_model_fn(tmp_path: Path) -> None:
    torch.manual_seed(2)
    linear = torch.nn.Linear(4, 2)
    archive = pack(
        tmp_path, "csv_transform_fn", lambda root: torch.jit.script(linear).save(str(root / "model.pt"))
    )
    server = start_server(tmp_path / "run", str(archive))
    rows = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32)
    try:
        status, headers, body = post(server, b"1,2,3,4\n5,6,7,8\n", {"Content-Type": "text/csv"})
    finally:
        server.stop()
    assert (status, headers["content-type"]) == (200, "text/csv"), body
    with torch.no_grad():
        expected = linear(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(np.loadtxt(io.StringIO(body.decode()), delimiter=","), expected, atol=1e-5)


def test_network_in_a_sibling_module_and_a_helper_importing_inference(tmp_path: Path) -> None:
    torch.manual_seed(3)
    net = example_namespace("sibling_network", "network")["TinyNet"]().eval()
    server = start_server(tmp_path / "run", str(pack(tmp_path, "sibling_network", save_state(net))))
    inputs = np.random.default_rng(3).normal(size=(2, 6)).astype(np.float32)
    try:
        status, _, body = post(
            server, json.dumps({"inputs": inputs.tolist()}).encode(), {"Content-Type": "application/json"}
        )
    finally:
        server.stop()
    assert status == 200, body
    with torch.no_grad():
        expected = net(torch.from_numpy(inputs)).numpy()
    answer = json.loads(body)
    np.testing.assert_allclose(answer["scores"], expected, rtol=1e-5, atol=1e-6)
    assert answer["labels"] == [["low", "medium", "high"][i] for i in expected.argmax(axis=1)]


def test_a_missing_sagemaker_program_is_a_startup_error(tmp_path: Path) -> None:
    archive = pack(tmp_path, "csv_transform_fn")
    result = serve_cli(str(archive), env={"SAGEMAKER_PROGRAM": "serve_me.py"})
    assert result.returncode == 2, result.stderr
    assert "serve_me.py" in " ".join(result.stderr.split())
    assert "ready on" not in result.stdout


def test_several_model_files_without_model_fn_is_a_startup_error(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("resnet.pt", "resnet.onnx"):
        (folder / name).write_bytes(b"not really a model")
    result = serve_cli(str(folder))
    message = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr
    assert "resnet.onnx" in message and "resnet.pt" in message
    assert "ready on" not in result.stdout


TINY_PACKAGE = "deploybench_tiny_requirement"


def make_wheel(folder: Path) -> Path:
    """A pure-Python wheel built by hand: installing it needs no network and no build backend."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{TINY_PACKAGE}-0.1.dist-info"
    files = {
        f"{TINY_PACKAGE}/__init__.py": "VALUE = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {TINY_PACKAGE}\nVersion: 0.1\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    wheel = folder / f"{TINY_PACKAGE}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


REQUIRING_HANDLER = f"""
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    import {TINY_PACKAGE}
    return str({TINY_PACKAGE}.VALUE)
"""


def test_requirements_are_named_when_missing_and_installed_in_isolation_on_request(tmp_path: Path) -> None:
    wheels = make_wheel(tmp_path / "wheels").parent
    folder = tmp_path / "model"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text(REQUIRING_HANDLER)
    (folder / "code" / "requirements.txt").write_text(
        f"--no-index\n--find-links {wheels}\n{TINY_PACKAGE}==0.1\n"
    )
    cache = tmp_path / "cache"
    server = start_server(tmp_path / "run", str(folder), "--install-requirements", "--cache-dir", str(cache))
    try:
        status, _, body = post(server, b"x", {"Content-Type": "text/plain"})
    finally:
        server.stop()
    assert (status, body) == (200, b"42")
    assert list(cache.rglob(f"{TINY_PACKAGE}/__init__.py")), "not installed under the cache folder"
    with pytest.raises(ImportError):
        __import__(TINY_PACKAGE)  # nothing was installed into this environment
    warned = start_server(tmp_path / "warned", str(folder))
    try:
        status, _, _ = post(warned, b"x", {"Content-Type": "text/plain"})
    finally:
        warned.stop()
    assert status == 500
    log = " ".join(warned.log().split())
    assert f"not installed: {TINY_PACKAGE}==0.1" in log and "--install-requirements" in log


def test_a_variant_behind_a_per_request_handler_is_batched_over_http(tmp_path: Path) -> None:
    """PIL in input_fn, torchvision transforms in predict_fn, onnxruntime standing in for the network:
    concurrent requests answer in the handler's format, and Server-Timing splits predict_fn into the
    handler's own preprocessing and the network's (batched) calls."""
    from concurrent.futures import ThreadPoolExecutor

    from helpers.sagemaker_archives import (
        MODEL_FN,
        OUTPUT_FN,
        PIL_INPUT_FN,
        TRANSFORMS_PREDICT_FN,
        example_archive,
        sample_photos,
    )

    archive = example_archive(tmp_path, MODEL_FN, PIL_INPUT_FN, TRANSFORMS_PREDICT_FN, OUTPUT_FN)
    photos = sample_photos(tmp_path / "photos")
    server = start_server(
        tmp_path / "run", str(archive), "--backend", "onnxruntime", "--payload", str(photos),
        "--max-batch-size", "4", "--max-delay-ms", "20", "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    bodies = [path.read_bytes() for path in sorted(photos.iterdir())] * 3
    try:
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda b: post(server, b, {"Content-Type": "image/jpeg"}), bodies))
    finally:
        server.stop()
    for status, headers, body in replies:
        assert status == 200, body
        answer = json.loads(body)  # the user's output_fn: top-5 of their classes
        assert len(answer) == 5 and set(answer[0]) == {"class", "probability"}
        timing = dict(part.split(";dur=") for part in headers["server-timing"].replace(" ", "").split(","))
        assert float(timing["preprocess"]) > 0 and float(timing["infer"]) > 0, timing
    log = (tmp_path / "run" / "stderr.txt").read_text() + (tmp_path / "run" / "stdout.txt").read_text()
    assert "the onnxruntime variant stands in for it" in log, log[-2000:]
