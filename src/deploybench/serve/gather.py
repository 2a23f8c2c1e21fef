"""Dynamic batching behind a per-request handler: the network calls of a batch's requests run as one.

A user's handler is written for one request. When the server batches, each request of a batch runs
its handler in a thread of its own, and the network stand-in's calls meet here: a call waits until
every request still running has either called the network or finished, then ONE predict runs on
all the waiting calls' rows (concatenated on the batch axis) and each caller gets its own rows back.
A handler calling the network twice (test-time augmentation) simply meets the others twice; one
that fails or never calls the network is counted out as soon as it finishes, so nobody waits for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

Item = TypeVar("Item")
Result = TypeVar("Result")
WAIT_LIMIT_S = 300.0  # a batch whose members never meet (a handler blocked elsewhere) fails, never hangs


@dataclass
class _Call:
    batch: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class CallGatherer:
    """Meets the network calls of the requests in flight and runs each meeting as one predict."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], max_rows: int) -> None:
        self.predict = predict
        self.max_rows = max_rows
        self.lock = threading.Lock()
        self.running = 0
        self.waiting: list[_Call] = []
        self.batches = 0  # predict calls made, for tests and the worker's info

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        call = _Call(batch)
        with self.lock:
            self.waiting.append(call)
            ready = self._take_if_met()
        if ready:
            self._run(ready)
        if not call.done.wait(WAIT_LIMIT_S):
            raise TimeoutError("the other requests of this batch never reached the network")
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def _take_if_met(self) -> list[_Call]:
        """Under the lock: the waiting calls, once every running request waits (or a batch is full)."""
        rows = sum(len(c.batch) for c in self.waiting)
        if self.waiting and (len(self.waiting) >= self.running or rows >= self.max_rows):
            taken, self.waiting = self.waiting, []
            return taken
        return []

    def _run(self, calls: list[_Call]) -> None:
        """One predict per input shape among the calls (shapes differ only if the handler's do)."""
        shapes: dict[tuple[int, ...], list[_Call]] = {}
        for call in calls:
            shapes.setdefault(tuple(call.batch.shape[1:]), []).append(call)
        for group in shapes.values():
            try:
                out = self.predict(np.ascontiguousarray(np.concatenate([c.batch for c in group])))
                self.batches += 1
                edges = np.cumsum([0] + [len(c.batch) for c in group])
                for call, start, end in zip(group, edges[:-1], edges[1:], strict=True):
                    call.result = out[start:end]
            except Exception as exc:  # the variant failed: every caller of this meeting answers it
                for call in group:
                    call.error = exc
            for call in group:
                call.done.set()

    def _finished(self) -> None:
        with self.lock:
            self.running -= 1
            ready = self._take_if_met()
        if ready:
            self._run(ready)

    def map(
        self, pool: ThreadPoolExecutor, work: Callable[[Item], Result], items: list[Item]
    ) -> list[Result]:
        """work(item) for every item, each in its own thread, their network calls gathered."""
        with self.lock:
            self.running += len(items)

        def one(item: Item) -> Result:
            try:
                return work(item)
            finally:
                self._finished()

        futures = [pool.submit(one, item) for item in items]
        wait(futures)  # every request finishes before any error is raised: none is left running
        return [future.result() for future in futures]


def gathered_pool(size: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, size), thread_name_prefix="handler")


def run_in_threads(
    gatherer: CallGatherer | None, pool: Any, work: Callable[[Item], Result], items: list[Item]
) -> list[Result]:
    """Several requests with a gatherer run concurrently; one request, or none, runs here."""
    if gatherer is None or len(items) == 1:
        return [work(item) for item in items]
    return gatherer.map(pool, work, items)
