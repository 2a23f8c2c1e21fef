"""A loopback HTTP server with known behaviour, for the load generator's tests.

Run as `python loopback_server.py PORT`. Routes (all POST):
  /echo                          -> 200 at once
  /sleep/{ms}                    -> 200 after ms (asyncio, so requests overlap); sends Server-Timing
  /stall/{key}/{after}           -> 2 ms service; the after-th request for `key` blocks the whole
                                    server for 1 s (time.sleep in the event loop) exactly once
  /flaky                         -> every 10th request answers 500
  /serial/{ms}                   -> one request at a time, ms each (capacity 1000/ms per second)
  /endpoints/{name}/invocations  -> the SageMaker runtime contract: JSON echo + Server-Timing
  /redirect                      -> 307 to /echo (a load test must count it as an error, not follow it)
  /by-connection/{fast}/{slow}   -> fast ms on the 1st, 3rd, ... new connection, slow ms on the others
                                    (two processes with one connection each see different latencies)
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

COUNTS: Counter[str] = Counter()


async def echo(request: Request) -> Response:
    await request.body()
    return Response(b"ok", media_type="text/plain")


async def sleep(request: Request) -> Response:
    body = await request.body()
    ms = float(request.path_params["ms"])
    await asyncio.sleep(ms / 1000)
    return Response(str(len(body)).encode(), headers={"Server-Timing": f"queue;dur=0.5, infer;dur={ms:g}"})


async def stall(request: Request) -> Response:
    await request.body()
    key = request.path_params["key"]
    COUNTS[key] += 1
    if COUNTS[key] == int(request.path_params["after"]):
        time.sleep(1.0)  # blocks the event loop: every request in flight waits
    await asyncio.sleep(0.002)
    return Response(b"ok")


SERIAL = asyncio.Lock()


async def serial(request: Request) -> Response:
    """One request at a time: capacity is exactly 1000/ms requests per second."""
    await request.body()
    async with SERIAL:
        await asyncio.sleep(float(request.path_params["ms"]) / 1000)
    return Response(b"ok")


async def flaky(request: Request) -> Response:
    await request.body()
    COUNTS["flaky"] += 1
    return Response(b"boom", status_code=500) if COUNTS["flaky"] % 10 == 0 else Response(b"ok")


async def redirect(request: Request) -> Response:
    await request.body()
    return Response(status_code=307, headers={"Location": "/echo"})


CONNECTIONS: dict[tuple[str, int], int] = {}


async def by_connection(request: Request) -> Response:
    """The delay depends on which connection the request came on (alternating per new connection)."""
    await request.body()
    client = request.client
    key = (client.host, client.port) if client else ("?", 0)
    order = CONNECTIONS.setdefault(key, len(CONNECTIONS))
    ms = request.path_params["fast" if order % 2 == 0 else "slow"]
    await asyncio.sleep(float(ms) / 1000)
    return Response(b"ok")


async def invocations(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {
            "endpoint": request.path_params["name"],
            "bytes": len(body),
            "content_type": request.headers.get("content-type"),
        },
        headers={"Server-Timing": "decode;dur=1.5, infer;dur=4"},
    )


app = Starlette(
    routes=[
        Route("/echo", echo, methods=["POST"]),
        Route("/sleep/{ms}", sleep, methods=["POST"]),
        Route("/stall/{key}/{after}", stall, methods=["POST"]),
        Route("/flaky", flaky, methods=["POST"]),
        Route("/serial/{ms}", serial, methods=["POST"]),
        Route("/endpoints/{name}/invocations", invocations, methods=["POST"]),
        Route("/redirect", redirect, methods=["POST"]),
        Route("/by-connection/{fast}/{slow}", by_connection, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
