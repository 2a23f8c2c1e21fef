"""The HTTP front: Starlette routes on uvicorn (uvloop + httptools), one process.

It does HTTP, the body limit, content negotiation, admission and dispatch only; decoding,
preprocessing and inference happen in the worker processes, so the event loop never blocks on them.

Admission is what keeps one client or a crowd from hurting the server: a full queue answers 503 at
once (before the body is read) with Retry-After; the per-request timeout starts at arrival and
covers reading the body (408 for a client that trickles it), the wait in the queue and the work
(504); a request whose client disconnects is taken out of the queue and never computed (499 in
/metrics, nginx's "client closed request").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from deploybench.sagemaker import codecs
from deploybench.sagemaker.errors import JSON, LOADING_RETRY_MS, ServeError, error_body, retry_after
from deploybench.serve.batching import Pending, QueueFull, RequestQueue
from deploybench.serve.metrics import ServerMetrics
from deploybench.serve.pool import WorkerPool
from deploybench.serve.protocol import WorkItem, WorkResult
from deploybench.serve.settings import ServeSettings

ReadyHook = Callable[[dict[str, Any]], None]
ZERO_TIMING = "queue;dur=0, decode;dur=0, preprocess;dur=0, infer;dur=0, encode;dur=0"
NO_WORK = {"Server-Timing": ZERO_TIMING}
CLIENT_CLOSED = 499  # nginx's code for "the client went away first"; only /metrics ever shows it
CLOSE = {"Connection": "close"}  # after 408/413 the rest of the body may still be on its way
# Response headers a handler may not set: the front owns framing and the content type.
RESERVED_HEADERS = frozenset({"content-length", "content-type", "transfer-encoding", "connection"})


class ServerStartError(RuntimeError):
    """The server could not start serving (a worker failed to load its model)."""


def error_response(exc: ServeError) -> Response:
    body = error_body(exc.status_code, str(exc))
    return Response(body, exc.status_code, {**NO_WORK, **exc.headers}, media_type=JSON)


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
            raise ServeError(f"invalid Content-Length {declared!r}", 400, headers=CLOSE)
        if int(declared) > limit:
            raise ServeError(
                f"body of {int(declared)} bytes is over the limit of {limit} bytes", 413, headers=CLOSE
            )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ServeError(f"body is over the limit of {limit} bytes", 413, headers=CLOSE)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ServeError("client went away before sending the whole body", CLIENT_CLOSED) from None
    if size == 0:
        raise ServeError("empty request body", 400)
    return b"".join(chunks)


async def wait_disconnect(receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    """Return when the client disconnects. Once the body is read, uvicorn's receive() blocks until
    the connection is lost (or our response is complete), so this costs nothing while waiting."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _response(pending: Pending, result: WorkResult) -> Response:
    headers = {"Server-Timing": server_timing(pending, result)}
    if result.headers:
        headers.update({k: v for k, v in result.headers.items() if k.lower() not in RESERVED_HEADERS})
    # The content type exactly as the handler chose it (Starlette's media_type would add a charset).
    headers["Content-Type"] = result.content_type
    return Response(result.body, result.status, headers)


class Front:
    """State of the front process and its request handler."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.builtin = settings.handler_path is None
        self.limit = int(settings.server.max_body_mb * 1024 * 1024)
        self.timeout_s = settings.server.timeout_s
        self.queue = RequestQueue(settings.server.max_queue_size)
        self.metrics = ServerMetrics(lambda: len(self.queue), lambda: self.pool.ready_count)
        self.pool = WorkerPool(settings, self.queue, self.metrics)
        self._ids = itertools.count()

    def negotiate(self, request: Request) -> tuple[str, str]:
        """(content type, accept) for the worker; the built-in handler's 415/406 are decided here.

        User handlers get both headers exactly as sent ("" when absent), as SageMaker passes them."""
        content_type = request.headers.get("content-type", "")
        accept = request.headers.get("accept", "")
        if not self.builtin:
            return content_type, accept
        media = codecs.media_type(content_type) or "application/x-image"
        if media not in codecs.INPUT_TYPES:
            raise ServeError(
                f"unsupported Content-Type {media!r}; use one of {sorted(codecs.INPUT_TYPES)}", 415
            )
        chosen = codecs.negotiate_accept(accept, default=self.settings.default_accept)
        if chosen is None:
            raise ServeError(f"unsupported Accept {accept!r}; use one of {list(codecs.OUTPUT_TYPES)}", 406)
        return media, chosen

    def admit(self) -> None:
        """Refuse at once what cannot be served soon: failed model, no worker ready, full queue."""
        if self.pool.failed is not None:  # the reason (it may name files) is for /ping and the log only
            raise ServeError("the model failed and is not served; /ping says why", 503)
        if not self.pool.is_ready:
            raise ServeError("no worker is ready yet", 503, headers=retry_after(LOADING_RETRY_MS))
        if self.queue.full:
            raise ServeError(
                f"server busy: {len(self.queue)} requests waiting (limit {self.queue.max_size})",
                503,
                headers=retry_after(self._drain_ms()),
            )

    def _drain_ms(self) -> float:
        """How long the current queue takes to drain at the measured service time."""
        workers = max(self.pool.ready_count, 1)
        return len(self.queue) * self.pool.service_s * 1000 / workers

    async def invoke(self, request: Request) -> Response:
        loop = asyncio.get_running_loop()
        arrival = loop.time()
        try:
            response = await self._invoke(request, arrival, loop)
        except ServeError as exc:
            response = error_response(exc)
        self.metrics.observe_request(response.status_code, loop.time() - arrival)
        return response

    async def _invoke(self, request: Request, arrival: float, loop: asyncio.AbstractEventLoop) -> Response:
        content_type, accept = self.negotiate(request)
        self.admit()
        deadline = arrival + self.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                body = await read_body(request, self.limit)
        except TimeoutError:
            raise ServeError(
                f"the body did not arrive within {self.timeout_s:g} s", 408, headers=CLOSE
            ) from None
        self.admit()  # the queue may have filled while the body arrived
        headers = None if self.builtin else dict(request.headers)
        item = WorkItem(next(self._ids), content_type, accept, body, headers)
        pending = Pending(item, arrival, loop.create_future())
        try:
            self.queue.put(pending)
        except QueueFull as exc:  # not reached after admit(); kept so the bound can never be passed
            raise ServeError(str(exc), 503, headers=retry_after(self._drain_ms())) from None
        result = await self._await_result(request, pending, deadline, loop)
        return _response(pending, result)

    async def _await_result(
        self, request: Request, pending: Pending, deadline: float, loop: asyncio.AbstractEventLoop
    ) -> WorkResult:
        gone = asyncio.ensure_future(wait_disconnect(request.receive))
        try:
            await asyncio.wait(
                (pending.future, gone), timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            gone.cancel()
        if pending.future.done():
            return pending.future.result()
        pending.future.cancel()  # nobody waits for it: a worker must not compute it
        self.queue.discard(pending)
        if gone.done() and not gone.cancelled():
            raise ServeError("client went away while the request waited", CLIENT_CLOSED)
        raise ServeError(f"no answer within {self.timeout_s:g} s", 504)

    async def ping(self, _: Request) -> Response:
        failed = self.pool.failed
        if failed is not None:
            body = json.dumps({"status": "failed", "reason": failed}).encode()
            return Response(body, 503, NO_WORK, media_type=JSON)
        if self.pool.is_ready:
            return Response(b'{"status": "ready"}', 200, NO_WORK, media_type=JSON)
        return Response(b'{"status": "loading"}', 503, NO_WORK, media_type=JSON)

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
