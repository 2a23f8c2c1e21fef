"""Several batches in flight per worker: the front keeps up to `depth` batches outstanding at one
worker, the worker runs them on `depth` threads and answers each with its batch id.

Why: with one batch in flight a worker decodes, infers, encodes and sends in turn, and its cores
idle while it decodes and while the front gathers the next batch. RuntimeKnobs.streams > 1 keeps
that many inferences running at once in one process (OpenVINO streams, concurrent ONNX Runtime or
torch calls, which release the GIL); RuntimeKnobs.overlap adds one more batch, decoded while the
others infer. A gate keeps at most `streams` predict calls running, so overlap never turns into
oversubscription. A user's handler (inference.py) runs one batch at a time, as SageMaker's servers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import pickle
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from deploybench.config import ServerConfig
from deploybench.serve.builtin import BuiltinPipeline
from deploybench.serve.protocol import BATCH, RESULTS, encode_frame, error_result, read_frame


def inflight_depth(server: ServerConfig, builtin: bool) -> int:
    """Batches one worker holds at once: its streams, plus one being decoded when overlapping."""
    if not builtin:
        return 1
    return server.runtime.streams + (1 if server.runtime.overlap else 0)


class StreamGate:
    """A variant wrapper letting at most `streams` predict() calls run at once."""

    def __init__(self, variant: Any, streams: int) -> None:
        self.variant = variant
        self._slots = threading.BoundedSemaphore(streams)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with self._slots:
            return self.variant.predict(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.variant, name)


def replicate(pipeline: Any, depth: int, streams: int) -> list[Any]:
    """`depth` built-in pipelines sharing one gated model, each with its own input buffer."""
    if depth <= 1 or not isinstance(pipeline, BuiltinPipeline):
        return [pipeline]
    pipeline.model.variant = StreamGate(pipeline.model.variant, streams)
    size = len(pipeline.buffer)
    return [pipeline] + [BuiltinPipeline(pipeline.model, size, pipeline.debug) for _ in range(depth - 1)]


def _receive(conn: Connection) -> tuple[int, list[Any]] | None:
    """The next (batch id, items); None once the front has closed the connection (shut down)."""
    while True:
        try:
            kind, payload = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return None
        if kind == BATCH:
            return payload


def answer_frame(pipeline: Any, batch_id: int, items: list[Any], debug: bool) -> bytes:
    """The batch's answers, pickled with its id. Should the pipeline fail as a whole (or a result
    not pickle), every request of the batch gets that error: exceptions never end a worker."""
    try:
        return pickle.dumps((RESULTS, (batch_id, pipeline.run(items))), pickle.HIGHEST_PROTOCOL)
    except (Exception, SystemExit) as exc:
        return pickle.dumps((RESULTS, (batch_id, [error_result(item.rid, exc, debug) for item in items])))


def serve_batches(conn: Connection, pipelines: list[Any], debug: bool = False) -> None:
    """Answer batches until the front goes: inline with one pipeline, else on a thread each."""
    if len(pipelines) == 1:
        while (message := _receive(conn)) is not None:
            conn.send_bytes(answer_frame(pipelines[0], *message, debug))
        return
    free: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for pipeline in pipelines:
        free.put(pipeline)
    send_lock = threading.Lock()

    def run(batch_id: int, items: list[Any]) -> None:
        pipeline = free.get()  # the front sends at most len(pipelines) batches, so one is free
        try:
            frame = answer_frame(pipeline, batch_id, items, debug)
        finally:
            free.put(pipeline)
        with send_lock, contextlib.suppress(OSError):
            conn.send_bytes(frame)

    with ThreadPoolExecutor(len(pipelines), thread_name_prefix="batch") as pool:
        while (message := _receive(conn)) is not None:
            pool.submit(run, *message)


class BatchChannel:
    """The front's end of one worker's socket: batches sent with an id, answers matched by it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[tuple[str, Any]]] = {}
        self._reading = asyncio.create_task(self._read_loop())

    async def _read_loop(self) -> None:
        try:
            while True:
                kind, (batch_id, results) = await read_frame(self.reader)
                future = self._waiting.pop(batch_id, None)
                if future is not None and not future.done():
                    future.set_result((kind, results))
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError, TypeError):
            pass
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("the worker closed its connection"))
        self._waiting.clear()

    async def call(self, items: list[Any]) -> tuple[str, Any]:
        """Send one batch, await its answer; ConnectionError when the worker goes first."""
        if self._reading.done():
            raise ConnectionError("the worker closed its connection")
        batch_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[batch_id] = future
        try:
            self.writer.write(encode_frame((BATCH, (batch_id, items))))
            await self.writer.drain()
            return await future
        finally:
            self._waiting.pop(batch_id, None)

    def close(self) -> None:
        self._reading.cancel()
        self.writer.close()
