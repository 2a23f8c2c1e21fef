"""Built-in vision codecs: image / npy / JSON bodies in, top-k JSON or raw logits out.

Images go through THE reference preprocessing (deploybench.inputs.payload: decode_image, then
resize_and_crop and normalise, which is exactly payload.preprocess split in two so the
Server-Timing header can tell decoding from preprocessing), or, with another decoder
(RuntimeKnobs.decoder), through inputs/decoders.py: decode, then crop and normalise, timed the same way.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
from PIL import Image

from deploybench.config import Decoder
from deploybench.inputs import decoders
from deploybench.inputs.payload import (
    CROP,
    PayloadError,
    decode_image,
    normalise,
    normalise_pixels,
    resize_and_crop,
)
from deploybench.sagemaker.errors import ServeError

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "application/x-image", "application/octet-stream"})
NPY = "application/x-npy"
JSON = "application/json"
INPUT_TYPES = IMAGE_TYPES | {NPY, JSON}
OUTPUT_TYPES = (JSON, NPY)  # first one is the default for */* and a missing Accept
NUMERIC_KINDS = frozenset("biuf")  # bool, signed, unsigned, float: what casts to float32 safely
# What json.loads / np.load raise on hostile bodies: RecursionError for 50,000 nested '[',
# MemoryError for absurd shapes, OverflowError for huge numbers.
DECODE_ERRORS = (ValueError, TypeError, OSError, EOFError, RecursionError, MemoryError, OverflowError)


def _array_into(array: np.ndarray, out: np.ndarray) -> None:
    if array.dtype.kind not in NUMERIC_KINDS:
        raise ServeError(f"array of dtype {array.dtype.str!r}; expected numbers", 400)
    if array.shape == (1, *out.shape):
        array = array[0]
    if array.shape != out.shape:
        raise ServeError(f"array of shape {array.shape}, expected {out.shape}", 400)
    np.copyto(out, array, casting="unsafe")


def load_npy(body: bytes) -> np.ndarray:
    """An .npy body, never unpickling (SageMaker's toolkit allows pickles: a remote code hole)."""
    try:
        return np.load(io.BytesIO(body), allow_pickle=False)
    except DECODE_ERRORS as exc:
        raise ServeError("cannot read the application/x-npy body", 400, detail=repr(exc)) from exc


def load_json(body: bytes | str) -> object:
    try:
        return json.loads(body)
    except DECODE_ERRORS as exc:
        raise ServeError("the application/json body is not valid JSON", 400, detail=repr(exc)) from exc


def _load_json_array(body: bytes) -> np.ndarray:
    data = load_json(body)
    try:
        return np.asarray(data, dtype=np.float32)
    except DECODE_ERRORS as exc:
        raise ServeError(
            "the application/json body is not a nested list of numbers", 400, detail=repr(exc)
        ) from exc


def decode_image_body(body: bytes) -> Image.Image:
    """The decoded image; our own refusals (a bomb) keep their message, foreign ones go to detail."""
    try:
        return decode_image(body)
    except PayloadError as exc:
        raise _refused(exc) from exc


def _refused(exc: PayloadError) -> ServeError:
    """Our own refusals (a bomb) keep their message, foreign ones go to detail: a 400 either way."""
    if exc.__cause__ is None:
        return ServeError(str(exc), 400)
    return ServeError("cannot decode the image body", 400, detail=str(exc))


def _decoded_into(body: bytes, out: np.ndarray, decoder: Decoder) -> tuple[float, float]:
    """A non-Pillow decoder's image into `out`: (decode_s, preprocess_s), as for Pillow."""
    start = time.perf_counter()
    try:
        image = decoders.decode(body, decoder)
    except PayloadError as exc:
        raise _refused(exc) from exc
    decoded = time.perf_counter()
    normalise_pixels(decoders.crop_pixels(image), out)
    return decoded - start, time.perf_counter() - decoded


def decode_into(
    body: bytes, content_type: str, out: np.ndarray, decoder: Decoder = decoders.PILLOW
) -> tuple[float, float]:
    """Write the model input for one request into `out` (C,H,W); returns (decode_s, preprocess_s).
    Images are decoded by `decoder` (RuntimeKnobs.decoder; Pillow: the reference preprocessing)."""
    start = time.perf_counter()
    if content_type in IMAGE_TYPES:
        if out.shape != (3, CROP, CROP):
            raise ServeError(f"images need a (3, {CROP}, {CROP}) model input, this one is {out.shape}", 415)
        if decoder != decoders.PILLOW:
            return _decoded_into(body, out, decoder)
        image = decode_image_body(body)
        decoded = time.perf_counter()
        normalise(resize_and_crop(image), out)
        return decoded - start, time.perf_counter() - decoded
    if content_type == NPY:
        array = load_npy(body)
    elif content_type == JSON:
        array = _load_json_array(body)
    else:
        raise ServeError(f"unsupported Content-Type {content_type!r}; use one of {sorted(INPUT_TYPES)}", 415)
    decoded = time.perf_counter()
    _array_into(array, out)
    return decoded - start, time.perf_counter() - decoded


def top_k_json(logits: np.ndarray, labels: list[str] | None, k: int) -> bytes:
    """Softmax probabilities of the k best classes, best first."""
    row = np.asarray(logits, dtype=np.float64).reshape(-1)
    k = min(k, row.size)
    best = np.argpartition(-row, k - 1)[:k]
    best = best[np.argsort(-row[best], kind="stable")]
    exp = np.exp(row - row.max())
    probs = exp[best] / exp.sum()
    predictions = [
        {
            "index": int(i),
            "label": labels[i] if labels and i < len(labels) else str(int(i)),
            "score": float(p),
        }
        for i, p in zip(best, probs, strict=True)
    ]
    return json.dumps({"predictions": predictions}).encode()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def encode_output(logits: np.ndarray, accept: str, labels: list[str] | None, k: int) -> bytes:
    """One request's logits row in the negotiated type (JSON top-k, or the raw logits as .npy)."""
    if accept == NPY:
        return npy_bytes(logits)
    if accept == JSON:
        return top_k_json(logits, labels, k)
    raise ServeError(f"unsupported Accept {accept!r}; use one of {list(OUTPUT_TYPES)}", 406)


def media_type(header: str | None) -> str:
    """`image/jpeg; q=1` -> `image/jpeg` (lower case); missing -> empty string."""
    return (header or "").split(";", 1)[0].strip().lower()


def negotiate_accept(
    header: str | None, offered: tuple[str, ...] = OUTPUT_TYPES, default: str | None = None
) -> str | None:
    """Best offered type for an Accept header (q-values honoured); None when nothing fits (406).

    A missing header or a wildcard gets `default` (SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT) when it is
    offered, else the first offered type."""
    fallback = default if default in offered else offered[0]
    if not header or not header.strip():
        return fallback
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        kind, *params = (piece.strip() for piece in part.split(";"))
        quality = _quality(params)
        if kind and quality > 0:
            ranked.append((-quality, position, kind.lower()))
    for _, _, kind in sorted(ranked):
        if kind == "*/*" or (kind.endswith("/*") and fallback.startswith(kind[:-1])):
            return fallback
        if kind in offered:
            return kind
    return None


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0
