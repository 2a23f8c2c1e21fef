"""The trivial endpoint bench/loadgen.py drives: raw ASGI on uvicorn + httptools + uvloop.

`python bench/trivial_server.py PORT DELAY_MS [serial]`: reads the body, waits DELAY_MS (0 = none),
answers 2 bytes. Nothing else, so the client is what gets measured. With `serial`, one request is
served at a time behind one lock, each for exactly DELAY_MS (time.sleep in one service thread:
nanosleep, ~0.1 ms precise, where an asyncio timer is only good to ~1 ms): an M/D/1 queue.
"""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import uvicorn

DELAY_S = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0
SERIAL = len(sys.argv) > 3 and sys.argv[3] == "serial"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
SERVICE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="service")
LOCK = asyncio.Lock()


async def _serve_one() -> None:
    async with LOCK:
        await asyncio.get_running_loop().run_in_executor(SERVICE, time.sleep, DELAY_S)


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    if SERIAL:
        await _serve_one()
    elif DELAY_S:
        await asyncio.sleep(DELAY_S)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b"ok"})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
