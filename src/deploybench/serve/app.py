"""The HTTP front: Starlette routes on uvicorn (uvloop + httptools), one process.

It does HTTP, the body limit, content negotiation and dispatch only; decoding, preprocessing and
inference happen in the worker processes, so the event loop never blocks on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from deploybench.serve import vision
from deploybench.serve.batching import Pending, RequestQueue
from deploybench.serve.metrics import ServerMetrics
from deploybench.serve.protocol import WorkItem, WorkResult
from deploybench.serve.settings import ServeSettings
from deploybench.serve.workers import WorkerPool

ReadyHook = Callable[[dict[str, Any]], None]
ZERO_TIMING = "queue;dur=0, decode;dur=0, preprocess;dur=0, infer;dur=0, encode;dur=0"
NO_WORK = {"Server-Timing": ZERO_TIMING}


class ServerStartError(RuntimeError):
    """The server could not start serving (a worker failed to load its model)."""


class RequestRejected(Exception):
    """A request refused in the front before it reaches a worker."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error_response(status: int, message: str) -> Response:
    body = json.dumps({"error": message, "status": status}).encode()
    return Response(body, status, NO_WORK, media_type="application/json")


def server_timing(pending: Pending, result: WorkResult) -> str:
    decode, prep, infer, encode = result.timings
    queue_ms = max(pending.dispatched - pending.arrival, 0.0) * 1000 if pending.dispatched else 0.0
    return (
        f"queue;dur={queue_ms:.3f}, decode;dur={decode * 1000:.3f}, preprocess;dur={prep * 1000:.3f}, "
        f"infer;dur={infer * 1000:.3f}, encode;dur={encode * 1000:.3f}"
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as Content-Length or the bytes received pass the limit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise RequestRejected(400, f"invalid Content-Length {declared!r}")
        if int(declared) > limit:
            raise RequestRejected(413, f"body of {int(declared)} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestRejected(413, f"body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestRejected(400, "client went away before sending the whole body") from None
    if size == 0:
        raise RequestRejected(400, "empty request body")
    return b"".join(chunks)


class Front:
    """State of the front process and its request handler."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.builtin = settings.handler_path is None
        self.limit = int(settings.server.max_body_mb * 1024 * 1024)
        self.queue = RequestQueue()
        self.metrics = ServerMetrics(lambda: len(self.queue), lambda: self.pool.ready_count)
        self.pool = WorkerPool(settings, self.queue, self.metrics)
        self._ids = itertools.count()

    def negotiate(self, request: Request) -> tuple[str, str]:
        """(content type, accept) for the worker; the built-in handler's 415/406 are decided here."""
        content_type = request.headers.get("content-type", "")
        accept = request.headers.get("accept", "")
        if not self.builtin:
            return content_type or vision.JSON, accept
        media = vision.media_type(content_type) or "application/x-image"
        if media not in vision.INPUT_TYPES:
            raise RequestRejected(
                415, f"unsupported Content-Type {media!r}; use one of {sorted(vision.INPUT_TYPES)}"
            )
        chosen = vision.negotiate_accept(accept)
        if chosen is None:
            raise RequestRejected(
                406, f"unsupported Accept {accept!r}; use one of {list(vision.OUTPUT_TYPES)}"
            )
        return media, chosen

    async def invoke(self, request: Request) -> Response:
        loop = asyncio.get_running_loop()
        arrival = loop.time()
        try:
            response = await self._invoke(request, arrival, loop)
        except RequestRejected as exc:
            response = error_response(exc.status, str(exc))
        self.metrics.observe_request(response.status_code, loop.time() - arrival)
        return response

    async def _invoke(self, request: Request, arrival: float, loop: asyncio.AbstractEventLoop) -> Response:
        content_type, accept = self.negotiate(request)
        body = await read_body(request, self.limit)
        if not self.pool.is_ready:
            raise RequestRejected(503, "no worker is ready yet")
        pending = Pending(
            WorkItem(next(self._ids), content_type, accept, body), arrival, loop.create_future()
        )
        self.queue.put(pending)
        try:
            async with asyncio.timeout(self.settings.server.timeout_s):
                result = await pending.future
        except TimeoutError:
            raise RequestRejected(504, f"no answer within {self.settings.server.timeout_s:g} s") from None
        headers = {"Server-Timing": server_timing(pending, result)}
        return Response(result.body, result.status, headers, media_type=result.content_type)

    async def ping(self, _: Request) -> Response:
        if self.pool.is_ready:
            return Response(b'{"status": "ready"}', 200, NO_WORK, media_type="application/json")
        return Response(b'{"status": "loading"}', 503, NO_WORK, media_type="application/json")

    async def render_metrics(self, _: Request) -> Response:
        return Response(self.metrics.render(), 200, NO_WORK, media_type="text/plain; version=0.0.4")

    async def invocations(self, request: Request) -> Response:
        return await self.invoke(request)


def base_url(host: str, port: int) -> str:
    """http://host:port, with IPv6 literals in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def create_app(front: Front, on_started: Callable[[], Any] | None = None) -> Starlette:
    """Starlette app whose lifespan starts and stops the worker pool."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        front.pool.start()
        watcher = asyncio.create_task(on_started()) if on_started else None
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            await front.pool.stop()

    routes = [
        Route("/ping", front.ping, methods=["GET"]),
        Route("/invocations", front.invocations, methods=["POST"]),
        Route("/endpoints/{name}/invocations", front.invocations, methods=["POST"]),
        Route("/metrics", front.render_metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _uvicorn_config(app: Starlette, settings: ServeSettings) -> uvicorn.Config:
    server = settings.server
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="info" if server.debug else "warning",
        access_log=server.debug,
        timeout_graceful_shutdown=int(server.timeout_s) + 5,
        timeout_keep_alive=60,
    )


def run_server(settings: ServeSettings, on_ready: ReadyHook | None = None) -> None:
    """Serve until SIGTERM/SIGINT (drains in-flight requests first). Raises ServerStartError when a
    worker cannot load the model; on_ready gets the workers' descriptions once /ping answers 200."""
    front = Front(settings)
    holder: dict[str, uvicorn.Server] = {}

    async def watch_startup() -> None:
        await front.pool.wait_started()
        server = holder["server"]
        if front.pool.fatal:
            server.should_exit = True
            return
        while not server.started:
            await asyncio.sleep(0.02)
        if on_ready is not None:
            on_ready(
                {
                    "url": base_url(settings.server.host, settings.server.port),
                    "workers": front.pool.workers_info(),
                    "placement": front.pool.placement.describe(),
                }
            )

    server = uvicorn.Server(_uvicorn_config(create_app(front, watch_startup), settings))
    holder["server"] = server
    # uvicorn re-raises the signal it drained on; make that a no-op so we return and exit cleanly.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server.run()
    if front.pool.fatal:
        raise ServerStartError(front.pool.fatal)
    if not server.started:
        raise ServerStartError(f"could not listen on {settings.server.host}:{settings.server.port}")
