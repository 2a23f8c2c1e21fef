"""Open-loop overload against a real server whose capacity is known: a handler with a fixed service time.

At 3x capacity the bounded queue must shed the excess at once (503 + Retry-After), keep serving at
capacity, never let a client time out, and answer the first request after the overload (a client
that finds the queue still full waits the Retry-After-Ms it is given, once).
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from helpers.serve_support import Server, start_server

pytestmark = pytest.mark.slow

SERVICE_S = 0.04  # one worker, batch 1: capacity is 1 / SERVICE_S = 25 requests/s
CAPACITY = 1 / SERVICE_S
OVERLOAD = 3.0
DURATION_S = 3.0
CLIENT_TIMEOUT_S = 10.0
QUEUE_LIMIT = 20

FIXED_SERVICE = f"""
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    time.sleep({SERVICE_S})
    return b"done"
"""


@dataclass
class Outcome:
    sent: float
    done: float
    status: int | None  # None: the client gave up (timeout) or the connection failed
    retry_after_ms: str | None = None

    @property
    def latency_s(self) -> float:
        return self.done - self.sent


async def _one(session: aiohttp.ClientSession, url: str, loop: asyncio.AbstractEventLoop) -> Outcome:
    sent = loop.time()
    try:
        async with session.post(url, data=b"x", headers={"Content-Type": "text/plain"}) as response:
            await response.read()
            return Outcome(sent, loop.time(), response.status, response.headers.get("Retry-After-Ms"))
    except (TimeoutError, aiohttp.ClientError):
        return Outcome(sent, loop.time(), None)


async def open_loop(url: str, rate: float, duration_s: float) -> tuple[list[Outcome], Outcome]:
    """Send at a constant rate for duration_s regardless of answers; then one more request, right
    away, retried once after Retry-After-Ms if the queue is still full."""
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for index in range(int(rate * duration_s)):
            await asyncio.sleep(max(0.0, start + index / rate - loop.time()))
            tasks.append(asyncio.ensure_future(_one(session, url, loop)))
        after = await _one(session, url, loop)
        if after.status == 503 and after.retry_after_ms:
            await asyncio.sleep(int(after.retry_after_ms) / 1000)
            after = await _one(session, url, loop)
        return list(await asyncio.gather(*tasks)), after


@pytest.fixture
def fixed_service_server(tmp_path: Path) -> Iterator[Server]:
    folder = tmp_path / "model"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text(textwrap.dedent(FIXED_SERVICE))
    args = ["--workers", "1", "--max-batch-size", "1", "--max-queue-size", str(QUEUE_LIMIT)]
    running = start_server(tmp_path / "run", str(folder), *args)
    yield running
    running.stop()


def test_three_times_capacity_is_shed_fast_and_capacity_is_kept(fixed_service_server: Server) -> None:
    url = f"{fixed_service_server.url}/invocations"
    outcomes, after = asyncio.run(open_loop(url, OVERLOAD * CAPACITY, DURATION_S))
    assert all(o.status is not None for o in outcomes), "a client timed out or was refused"
    shed = [o for o in outcomes if o.status == 503]
    served = [o for o in outcomes if o.status == 200]
    assert len(shed) + len(served) == len(outcomes), {o.status for o in outcomes}
    assert shed, "3x overload and nothing was shed: the queue is unbounded"
    assert np.percentile([o.latency_s for o in shed], 99) < 0.100
    assert all(o.retry_after_ms and int(o.retry_after_ms) > 0 for o in shed)
    window_end = outcomes[0].sent + DURATION_S
    goodput = sum(o.done <= window_end for o in served) / DURATION_S
    assert goodput >= 0.8 * CAPACITY, f"goodput {goodput:.1f}/s of capacity {CAPACITY:.0f}/s"
    assert after.status == 200
