"""Built-in codecs: content negotiation, decoding into the batch buffer, top-k answers."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from deploybench.inputs.payload import default_payload_path, preprocess
from deploybench.sagemaker.codecs import decode_into, encode_output, negotiate_accept, top_k_json
from deploybench.sagemaker.errors import ServeError


def npy_body(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/x-npy", "application/x-npy"),
        ("text/html, application/x-npy;q=0.5, application/json;q=0.9", "application/json"),
        ("application/json;q=0, application/x-npy", "application/x-npy"),
        ("text/html", None),
        ("application/json;q=0", None),
    ],
)
def test_accept_negotiation(header: str | None, chosen: str | None) -> None:
    assert negotiate_accept(header) == chosen


def test_image_decodes_exactly_like_the_reference_preprocessing() -> None:
    body = default_payload_path().read_bytes()
    out = np.empty((3, 224, 224), np.float32)
    decode_s, prep_s = decode_into(body, "image/jpeg", out)
    np.testing.assert_array_equal(out, preprocess(body))
    assert decode_s > 0 and prep_s > 0


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b"junk", "image/jpeg", 400),
        (b"[1, 2, 3]", "application/json", 400),
        (b"not json", "application/json", 400),
        (b"\x93NUMPY broken", "application/x-npy", 400),
        (b"hello", "text/plain", 415),
        (b"[" * 50_000, "application/json", 400),  # RecursionError inside json.loads
        (npy_body(np.full((3, 224, 224), "x")), "application/x-npy", 400),  # the right shape, strings
        (npy_body(np.zeros((3, 224, 224), np.complex64)), "application/x-npy", 400),
    ],
)
def test_bad_bodies_raise_with_a_status(body: bytes, ctype: str, status: int) -> None:
    with pytest.raises(ServeError) as caught:
        decode_into(body, ctype, np.empty((3, 224, 224), np.float32))
    assert caught.value.status_code == status


def test_decoding_errors_do_not_show_foreign_text() -> None:
    with pytest.raises(ServeError) as caught:
        decode_into(b"definitely not a jpeg", "image/jpeg", np.empty((3, 224, 224), np.float32))
    assert str(caught.value) == "cannot decode the image body" and "BytesIO" in (caught.value.detail or "")


@pytest.mark.parametrize(
    ("header", "default", "chosen"),
    [(None, "application/x-npy", "application/x-npy"), ("*/*", "application/x-npy", "application/x-npy"),
     ("application/json", "application/x-npy", "application/json"), (None, "text/csv", "application/json")],
)  # fmt: skip
def test_default_accept_applies_to_missing_and_wildcard(
    header: str | None, default: str, chosen: str
) -> None:
    assert negotiate_accept(header, default=default) == chosen


def test_top_k_is_sorted_softmax_with_labels() -> None:
    logits = np.array([0.0, 3.0, 1.0, 2.0], np.float32)
    answer = json.loads(top_k_json(logits, ["a", "b", "c", "d"], 3))["predictions"]
    assert [p["label"] for p in answer] == ["b", "d", "c"]
    probs = np.exp(logits) / np.exp(logits).sum()
    assert [p["score"] for p in answer] == pytest.approx([probs[1], probs[3], probs[2]])
    assert len(json.loads(top_k_json(logits, None, 10))["predictions"]) == 4  # k capped, indices as labels


def test_unsupported_accept_in_encoder_is_406() -> None:
    with pytest.raises(ServeError) as caught:
        encode_output(np.zeros(3), "text/html", None, 5)
    assert caught.value.status_code == 406
