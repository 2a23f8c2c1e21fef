"""Dynamic batching: requests wait in one queue; an idle worker takes up to B of them, waiting at
most max_delay after the oldest, so one predict call serves the whole batch.

With max_batch_size=1 nothing ever waits: the first request is taken and sent at once.
The queue is bounded (ServerConfig.max_queue_size): a full queue refuses at once, so overload is
answered with fast 503s instead of a wait that grows until every client times out. Requests that
time out or whose client leaves are taken out (discard), so they neither hold a place nor get computed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field

from deploybench.serve.protocol import WorkItem, WorkResult


@dataclass(eq=False)
class Pending:
    """A request in the front process: its work item, arrival time, and the future its handler awaits."""

    item: WorkItem
    arrival: float
    future: asyncio.Future[WorkResult]
    dispatched: float = field(default=0.0)

    @property
    def live(self) -> bool:
        """False once the client is gone or timed out: such requests are dropped, not computed."""
        return not self.future.done()


class QueueFull(Exception):
    """The queue holds max_size requests already."""


class RequestQueue:
    """Bounded FIFO of Pending requests shared by every worker's dispatcher."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._items: deque[Pending] = deque()
        self._nonempty = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.max_size

    def put(self, pending: Pending) -> None:
        if self.full:
            raise QueueFull(f"{len(self._items)} requests are waiting already (limit {self.max_size})")
        self._items.append(pending)
        self._nonempty.set()

    def drain(self) -> list[Pending]:
        """Take every waiting request out (the last ready worker died: nobody will serve them soon)."""
        taken = list(self._items)
        self._items.clear()
        self._nonempty.clear()
        return taken

    def discard(self, pending: Pending) -> None:
        """Take out a request that timed out or lost its client (O(queue length), which is bounded)."""
        with contextlib.suppress(ValueError):  # already taken by a worker, or never queued
            self._items.remove(pending)

    def put_front(self, batch: list[Pending]) -> None:
        """Give back requests a worker never received (it died first), keeping their order."""
        self._items.extendleft(reversed(batch))
        if self._items:
            self._nonempty.set()

    def _pop_live(self) -> Pending | None:
        while self._items:
            pending = self._items.popleft()
            if pending.live:
                return pending
        self._nonempty.clear()
        return None

    async def _wait(self, timeout: float | None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._nonempty.wait()
        except TimeoutError:
            return False
        return True

    async def get_batch(self, max_size: int, max_delay_s: float) -> list[Pending]:
        """Wait for one request, then gather up to max_size until max_delay_s after its arrival."""
        loop = asyncio.get_running_loop()
        first = self._pop_live()
        while first is None:
            await self._wait(None)
            first = self._pop_live()
        batch = [first]
        try:
            await self._gather(batch, max_size, first.arrival + max_delay_s, loop)
        except asyncio.CancelledError:
            self.put_front(batch)  # cancelled mid-gather: nothing taken may be lost
            raise
        return batch

    async def _gather(
        self, batch: list[Pending], max_size: int, deadline: float, loop: asyncio.AbstractEventLoop
    ) -> None:
        while len(batch) < max_size:
            pending = self._pop_live()
            if pending is not None:
                batch.append(pending)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0 or not await self._wait(remaining):
                return
