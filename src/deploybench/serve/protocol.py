"""The messages between the front process and a worker: small tuples, pickled, length-prefixed.

Framing is multiprocessing.Connection's (4-byte big-endian length, -1 then 8 bytes for huge
messages), so the worker uses a plain Connection and the front reads the same socket with asyncio.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any, NamedTuple

from deploybench.sagemaker.errors import JSON, error_body, exception_body

NO_TIMINGS = (0.0, 0.0, 0.0, 0.0)


class WorkItem(NamedTuple):
    """One request as the worker sees it: raw bytes in, so decoding happens in the worker.

    `headers` (every request header, lower-case names) is sent for user handlers only: SageMaker
    hands them to the handler's context; the built-in pipeline needs none of them.
    """

    rid: int
    content_type: str
    accept: str
    body: bytes
    headers: dict[str, str] | None = None


class WorkResult(NamedTuple):
    """One response: already encoded body plus the per-stage times in seconds."""

    rid: int
    status: int
    body: bytes
    content_type: str
    timings: tuple[float, float, float, float]  # decode, preprocess, infer, encode
    headers: dict[str, str] | None = None  # set by a handler through its context


# Message kinds, worker -> front.
READY = "ready"  # payload: dict describing the loaded variant
FAILED = "failed"  # payload: one-line reason the model could not be loaded
RESULTS = "results"  # payload: (batch id, list[WorkResult]); answers may come in any order
# Front -> worker.
BATCH = "batch"  # payload: (batch id, list[WorkItem]); several may be in flight (serve/inflight.py)

_HEADER = struct.Struct("!i")
_BIG_HEADER = struct.Struct("!Q")


def encode_frame(message: tuple[str, Any]) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(payload) > 0x7FFFFFFF:
        return _HEADER.pack(-1) + _BIG_HEADER.pack(len(payload)) + payload
    return _HEADER.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[str, Any]:
    """Read one message; raises asyncio.IncompleteReadError when the worker is gone."""
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size == -1:
        (size,) = _BIG_HEADER.unpack(await reader.readexactly(_BIG_HEADER.size))
    return pickle.loads(await reader.readexactly(size))


def error_result(rid: int, exc: BaseException, debug: bool, timings: tuple = NO_TIMINGS) -> WorkResult:
    """A worker's answer for a request that raised."""
    status, body = exception_body(exc, debug)
    return WorkResult(rid, status, body, JSON, timings)


def status_result(rid: int, status: int, message: str, headers: dict[str, str] | None = None) -> WorkResult:
    """The front's answer for a request its worker never answered (it died, or hung)."""
    return WorkResult(rid, status, error_body(status, message), JSON, NO_TIMINGS, headers)
