"""How worker messages reach the parent: one pipe per worker process, or a queue for a thread.

A process's pipe is waited on together with its sentinel (readable when the process ends), so
the parent sleeps until there is a message or a death, and a worker that dies without saying
"done" becomes a "died" message at once, not when some timeout or the hard stop comes round.
"""

from __future__ import annotations

import queue
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol


class Channel(Protocol):
    """Messages from the workers of one point."""

    def receive(self, timeout_s: float) -> list[dict]:
        """Whatever arrived, waiting up to timeout_s for the first message."""

    def all_ended(self) -> bool:
        """Every worker said "done" (or died)."""


class QueueChannel:
    """Thread workers: they put messages on a queue (a thread cannot die without saying done)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.queue: queue.SimpleQueue[dict] = queue.SimpleQueue()
        self.ended: set[int] = set()

    def put(self, message: dict) -> None:
        self.queue.put(message)

    def receive(self, timeout_s: float) -> list[dict]:
        try:
            messages = [self.queue.get(timeout=timeout_s)]
        except queue.Empty:
            return []
        while not self.queue.empty():
            messages.append(self.queue.get_nowait())
        self.ended.update(m["worker"] for m in messages if m["type"] == "done")
        return messages

    def all_ended(self) -> bool:
        return len(self.ended) >= self.workers


class PipeChannel:
    """Worker processes: one pipe each, watched together with the processes' sentinels."""

    def __init__(self, conns: dict[int, Connection], processes: dict[int, Any]) -> None:
        self.conns = dict(conns)
        self.processes = processes
        self.ended: set[int] = set()

    def _drain(self, worker: int) -> list[dict]:
        conn = self.conns.get(worker)
        messages: list[dict] = []
        try:
            while conn is not None and conn.poll():
                messages.append(conn.recv())
        except (EOFError, OSError):  # the other end is closed: nothing more will come
            conn.close()  # type: ignore[union-attr]
            del self.conns[worker]
        self.ended.update(m["worker"] for m in messages if m["type"] == "done")
        return messages

    def _died(self, worker: int) -> list[dict]:
        messages = self._drain(worker)  # what it sent before it ended
        if worker not in self.ended:
            self.ended.add(worker)
            code = self.processes[worker].exitcode
            messages.append(
                {"type": "died", "worker": worker, "message": f"load worker {worker} died (exit code {code})"}
            )
        return messages

    def receive(self, timeout_s: float) -> list[dict]:
        sentinels = {self.processes[w].sentinel: w for w in self.processes if w not in self.ended}
        waitables = [*self.conns.values(), *sentinels]
        if not waitables:
            return []
        ready = wait(waitables, timeout_s)
        messages: list[dict] = []
        for worker, conn in list(self.conns.items()):
            if conn in ready:
                messages.extend(self._drain(worker))
        for sentinel, worker in sentinels.items():
            if sentinel in ready:
                messages.extend(self._died(worker))
        return messages

    def all_ended(self) -> bool:
        return len(self.ended) >= len(self.processes)
