"""The built-in vision handler behind a real server: answers, batching, boto3, bad input, metrics."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers.serve_support import (
    SMALL_MODEL,
    Server,
    assert_no_internals,
    distinct_jpegs,
    npy,
    npy_body,
    ping,
    request,
    start_server,
)

from deploybench.backends.build import build_variant
from deploybench.config import ModelSpec
from deploybench.inputs.payload import default_payload_path, preprocess

pytestmark = pytest.mark.slow
JPEG = {"Content-Type": "image/jpeg"}
TIMING = re.compile(
    r"^queue;dur=[\d.]+, decode;dur=[\d.]+, preprocess;dur=[\d.]+, infer;dur=[\d.]+, encode;dur=[\d.]+$"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = [
        "--model",
        SMALL_MODEL,
        "--backend",
        "eager",
        "--workers",
        "1",
        "--threads",
        "1",
        "--max-batch-size",
        "8",
        "--max-delay-ms",
        "50",
        "--max-body-mb",
        "4",
    ]
    running = start_server(tmp_path_factory.mktemp("builtin"), *args)
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def reference() -> object:
    variant, loaded = build_variant(ModelSpec(source=SMALL_MODEL), "eager", threads=1)
    return variant, loaded


def reference_logits(reference: object, bodies: list[bytes]) -> np.ndarray:
    variant, _ = reference  # type: ignore[misc]
    return np.stack([variant.predict(preprocess(body)[None])[0] for body in bodies])


def test_classifies_the_default_jpeg_like_the_in_process_variant(server: Server, reference: object) -> None:
    body = default_payload_path().read_bytes()
    status, headers, answer = request(f"{server.url}/invocations", body, JPEG)
    assert status == 200 and headers["content-type"] == "application/json"
    assert TIMING.match(headers["server-timing"]), headers["server-timing"]
    predictions = json.loads(answer)["predictions"]
    expected = reference_logits(reference, [body])[0]
    probs = np.exp(expected - expected.max()) / np.exp(expected - expected.max()).sum()
    assert len(predictions) == 5
    _, loaded = reference  # type: ignore[misc]
    for item in predictions:
        assert item["label"] == loaded.labels[item["index"]]
        assert item["score"] == pytest.approx(float(probs[item["index"]]), rel=1e-3)
    assert expected[predictions[0]["index"]] == pytest.approx(expected.max(), abs=1e-5)
    status, headers, raw = request(f"{server.url}/invocations", body, {**JPEG, "Accept": "application/x-npy"})
    assert status == 200 and headers["content-type"] == "application/x-npy"
    np.testing.assert_allclose(npy(raw), expected, rtol=1e-4, atol=1e-4)


def test_concurrent_distinct_images_each_get_their_own_answer_in_batches(
    server: Server, reference: object
) -> None:
    bodies = distinct_jpegs(24)
    expected = reference_logits(reference, bodies)
    headers = {**JPEG, "Accept": "application/x-npy"}
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda b: request(f"{server.url}/invocations", b, headers), bodies))
    for (status, _, raw), want in zip(answers, expected, strict=True):
        assert status == 200
        np.testing.assert_allclose(npy(raw), want, rtol=1e-3, atol=1e-4)
    metrics = request(f"{server.url}/metrics")[2].decode()
    singles = int(re.search(r'deploybench_batch_size_bucket\{le="1"\} (\d+)', metrics).group(1))
    batches = int(re.search(r"deploybench_batch_size_count (\d+)", metrics).group(1))
    assert batches > singles, metrics  # at least one predict call served more than one request


def test_npy_and_json_array_inputs(server: Server, reference: object) -> None:
    array = preprocess(default_payload_path().read_bytes())
    expected = reference_logits(reference, [default_payload_path().read_bytes()])[0]
    for body, ctype in (
        (npy_body(array[None]), "application/x-npy"),
        (json.dumps(array.tolist()).encode(), "application/json"),
    ):
        status, _, raw = request(
            f"{server.url}/invocations", body, {"Content-Type": ctype, "Accept": "application/x-npy"}
        )
        assert status == 200
        np.testing.assert_allclose(npy(raw), expected, rtol=1e-3, atol=1e-4)


def test_boto3_sagemaker_runtime_invoke_endpoint(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("sagemaker-runtime", endpoint_url=server.url)
    answer = client.invoke_endpoint(
        EndpointName="deploybench",
        ContentType="image/jpeg",
        Accept="application/json",
        Body=default_payload_path().read_bytes(),
    )
    assert answer["ContentType"] == "application/json"
    assert len(json.loads(answer["Body"].read())["predictions"]) == 5


def _bomb_png() -> bytes:
    """A tiny PNG declaring 100000 x 100000 pixels (a decompression bomb by its header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


BAD_INPUTS = [
    ("truncated jpeg", default_payload_path().read_bytes()[:2000], JPEG, 400),
    ("not an image", b"definitely not a jpeg", JPEG, 400),
    ("decompression bomb", _bomb_png(), {"Content-Type": "image/png"}, 400),
    (
        "npy of the wrong shape",
        npy_body(np.zeros((3, 10, 10), np.float32)),
        {"Content-Type": "application/x-npy"},
        400,
    ),
    ("json that is not numbers", b'{"a": 1}', {"Content-Type": "application/json"}, 400),
    ("json nested 50,000 deep", b"[" * 50_000, {"Content-Type": "application/json"}, 400),
    (
        "npy of strings with the right shape",
        npy_body(np.full((1, 3, 224, 224), "x")),
        {"Content-Type": "application/x-npy"},
        400,
    ),
    ("unsupported content type", b"hello", {"Content-Type": "text/plain"}, 415),
    ("unsupported accept", default_payload_path().read_bytes(), {**JPEG, "Accept": "text/html"}, 406),
]


@pytest.mark.parametrize(("name", "body", "headers", "status"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_its_status_and_the_server_keeps_serving(
    server: Server, name: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    got, got_headers, answer = request(f"{server.url}/invocations", body, headers)
    assert got == status, answer
    error = json.loads(answer)
    assert error["status"] == status and error["error"]
    assert_no_internals(answer)
    assert "server-timing" in got_headers
    assert request(f"{server.url}/invocations", default_payload_path().read_bytes(), JPEG)[0] == 200


LIMIT = 4 * 1024 * 1024


def _raw_post(port: int, head: bytes, body: bytes) -> bytes:
    """Send a request over a keep-alive socket, tolerating the server answering mid-body."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n" + head + b"\r\n"
        )
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(body)
        return sock.recv(4096)


def test_over_limit_is_refused_before_the_body_is_sent(server: Server) -> None:
    """Declare 100 MB, send nothing: the 413 comes back without the server waiting for the body."""
    assert _raw_post(server.port, b"Content-Length: 100000000\r\n", b"").startswith(b"HTTP/1.1 413")


def test_over_limit_is_refused_while_streaming(server: Server) -> None:
    """No Content-Length (chunked): the server counts while reading and answers 413 past the limit."""
    chunk = b"\xff" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(LIMIT // len(chunk) + 2))
    answer = _raw_post(server.port, b"Transfer-Encoding: chunked\r\n", body + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"status": 413' in answer or b"413" in answer
    assert request(f"{server.url}/invocations", default_payload_path().read_bytes(), JPEG)[0] == 200


def test_endpoint_path_ping_and_metrics(server: Server) -> None:
    status, _, _ = request(
        f"{server.url}/endpoints/any-name/invocations", default_payload_path().read_bytes(), JPEG
    )
    assert status == 200
    # its own bad input (the other tests share this server, in any order): a type it cannot read and
    # a broken image, each answered 4xx without costing a worker
    assert request(f"{server.url}/invocations", b"hello", {"Content-Type": "text/plain"})[0] == 415
    assert request(f"{server.url}/invocations", b"not an image", JPEG)[0] in (400, 415, 422)
    assert ping(server.url) == 200
    metrics = request(f"{server.url}/metrics")[2].decode()
    for needle in (
        'deploybench_requests_total{status="200"}',
        'deploybench_requests_total{status="415"}',
        "deploybench_request_latency_seconds_bucket",
        "deploybench_queue_depth 0",
        "deploybench_workers_ready 1",
        "deploybench_worker_restarts_total 0",  # no bad input above cost a worker
    ):
        assert needle in metrics


def test_ready_json_describes_the_variant(tmp_path: Path) -> None:
    """--json writes what was loaded (the study records it); exercised on a second tiny server."""
    out = tmp_path / "ready.json"
    running = start_server(
        tmp_path / "srv",
        "--model",
        SMALL_MODEL,
        "--json",
        str(out),
        env={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"},
    )
    try:
        info = json.loads(out.read_text())
    finally:
        assert running.stop() == 0
    assert [w["backend"] for w in info["workers"]] == ["eager", "eager"]
    assert info["workers"][0]["precision"] == "fp32" and info["settings"]["server"]["workers"] == 2
    assert "ready on" in running.log()
