"""The trivial endpoint bench/loadgen.py drives: raw ASGI on uvicorn + httptools + uvloop.

`python bench/trivial_server.py PORT DELAY_MS`: reads the body, waits DELAY_MS (0 = none),
answers 2 bytes. Nothing else, so the client is what gets measured.
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn

DELAY_S = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"2")]


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    if DELAY_S:
        await asyncio.sleep(DELAY_S)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b"ok"})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                log_level="warning", access_log=False, lifespan="off")
