"""Dynamic batching: requests wait in one queue; an idle worker takes up to B of them, waiting at
most max_delay after the oldest, so one predict call serves the whole batch.

With max_batch_size=1 nothing ever waits: the first request is taken and sent at once.
"""

from __future__ import annotations

import asyncio
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


class RequestQueue:
    """FIFO of Pending requests shared by every worker's dispatcher."""

    def __init__(self) -> None:
        self._items: deque[Pending] = deque()
        self._nonempty = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, pending: Pending) -> None:
        self._items.append(pending)
        self._nonempty.set()

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
