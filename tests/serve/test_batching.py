"""The request queue: batches of up to B, no wait at B=1, bounded wait otherwise, nothing lost."""

from __future__ import annotations

import asyncio

import pytest

from deploybench.serve.batching import Pending, QueueFull, RequestQueue
from deploybench.serve.protocol import WorkItem


def pending(rid: int, arrival: float | None = None) -> Pending:
    loop = asyncio.get_running_loop()
    item = WorkItem(rid, "image/jpeg", "application/json", b"")
    return Pending(item, loop.time() if arrival is None else arrival, loop.create_future())


def ids(batch: list[Pending]) -> list[int]:
    return [p.item.rid for p in batch]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_batch_of_one_does_not_wait() -> None:
    async def scenario() -> float:
        queue = RequestQueue(100)
        queue.put(pending(0))
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert ids(await queue.get_batch(1, 5.0)) == [0]
        return loop.time() - start

    assert run(scenario()) < 0.5


def test_takes_up_to_max_size_in_order() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        queue = RequestQueue(100)
        for rid in range(5):
            queue.put(pending(rid))
        return ids(await queue.get_batch(3, 1.0)), ids(await queue.get_batch(3, 0.0))

    assert run(scenario()) == ([0, 1, 2], [3, 4])


def test_waits_for_late_requests_until_the_delay() -> None:
    async def scenario() -> tuple[list[int], float]:
        queue = RequestQueue(100)
        loop = asyncio.get_running_loop()
        queue.put(pending(0))
        loop.call_later(0.02, queue.put, pending(1))
        start = loop.time()
        batch = await queue.get_batch(4, 0.15)
        return ids(batch), loop.time() - start

    batch, waited = run(scenario())  # type: ignore[misc]
    assert batch == [0, 1]
    assert 0.1 <= waited < 1.0  # waited for the delay after the first, not for ever


def test_skips_requests_whose_client_is_gone() -> None:
    async def scenario() -> list[int]:
        queue = RequestQueue(100)
        gone = pending(0)
        gone.future.cancel()
        queue.put(gone)
        queue.put(pending(1))
        return ids(await queue.get_batch(4, 0.0))

    assert run(scenario()) == [1]


def test_cancelled_gather_gives_the_requests_back() -> None:
    async def scenario() -> list[int]:
        queue = RequestQueue(100)
        queue.put(pending(0))
        task = asyncio.ensure_future(queue.get_batch(4, 10.0))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return ids(await queue.get_batch(4, 0.0))

    assert run(scenario()) == [0]


def test_a_full_queue_refuses_at_once() -> None:
    async def scenario() -> list[int]:
        queue = RequestQueue(2)
        queue.put(pending(0))
        queue.put(pending(1))
        assert queue.full
        with pytest.raises(QueueFull):
            queue.put(pending(2))
        return ids(await queue.get_batch(4, 0.0))

    assert run(scenario()) == [0, 1]


def test_discarded_requests_leave_the_queue_and_free_their_place() -> None:
    async def scenario() -> list[int]:
        queue = RequestQueue(2)
        timed_out, waiting = pending(0), pending(1)
        queue.put(timed_out)
        queue.put(waiting)
        timed_out.future.cancel()
        queue.discard(timed_out)
        queue.discard(timed_out)  # twice, or after a worker took it: nothing happens
        assert len(queue) == 1
        queue.put(pending(2))  # the freed place is usable at once
        return ids(await queue.get_batch(4, 0.0))

    assert run(scenario()) == [1, 2]


def test_drain_takes_every_waiting_request() -> None:
    async def scenario() -> tuple[list[int], int]:
        queue = RequestQueue(4)
        for rid in range(3):
            queue.put(pending(rid))
        return ids(queue.drain()), len(queue)

    assert run(scenario()) == ([0, 1, 2], 0)
