"""The front side of the worker processes: spawn, supervise, restart, and feed them batches.

Each worker has one supervisor task: spawn (on the cores the placement plan gives it) -> wait for
READY -> run `inflight` dispatch loops { take a batch from the shared queue, send it, await the
results }. A worker holds at most `inflight` batches (1 unless it runs several streams or overlaps
decoding, serve/inflight.py), so the queue (and its wait time) stays in the front where it is
measured. A worker that dies fails its in-flight requests with a 500 and is restarted; requests it
never received go back to the head of the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from deploybench.serve.batching import Pending, RequestQueue
from deploybench.serve.inflight import BatchChannel
from deploybench.serve.metrics import ServerMetrics
from deploybench.serve.placement import apply_cores, available_cores, plan_cores
from deploybench.serve.protocol import READY, RESULTS, WorkResult, read_frame
from deploybench.serve.settings import ServeSettings
from deploybench.serve.worker import worker_main

log = logging.getLogger("deploybench.serve")
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
HUNG_GRACE_S = 5.0
STOP_GRACE_S = 5.0


class WorkerFailed(RuntimeError):
    """The worker could not load its model (message from the worker), or died while loading."""


class WorkerDied(RuntimeError):
    """A ready worker went away; the supervisor restarts it."""


def _result_for(pending: Pending, status: int, message: str) -> WorkResult:
    body = ('{"error": "%s", "status": %d}' % (message, status)).encode()  # noqa: UP031 - fixed text
    return WorkResult(pending.item.rid, status, body, "application/json", (0.0, 0.0, 0.0, 0.0))


def fail_batch(batch: list[Pending], status: int, message: str) -> None:
    for pending in batch:
        if pending.live:
            pending.future.set_result(_result_for(pending, status, message))


@dataclass
class WorkerSlot:
    """One worker position: the current process, its socket streams, and whether it is ready."""

    index: int
    process: Any = None
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    ready: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    cores: tuple[int, ...] | None = None
    channel: BatchChannel | None = None

    async def spawn(self, settings_json: str) -> dict[str, Any]:
        """Start the process and wait for READY; raises WorkerFailed on FAILED or death."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=worker_main,
            args=(self.index, child, settings_json, self.cores),
            name=f"deploybench-worker-{self.index}",
        )
        self.process.start()
        child.close()
        sock = socket.socket(fileno=os.dup(parent.fileno()))
        parent.close()
        self.exited = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(self.process.sentinel, self._on_exit)
        self.reader, self.writer = await asyncio.open_connection(sock=sock)
        try:
            kind, payload = await read_frame(self.reader)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            code = await self._exit_code()
            raise WorkerFailed(f"worker {self.index} exited (code {code}) while loading the model") from exc
        if kind != READY:
            raise WorkerFailed(f"worker {self.index} could not load the model: {payload}")
        self.info = payload
        self.channel = BatchChannel(self.reader, self.writer)
        return payload

    def _on_exit(self) -> None:
        asyncio.get_running_loop().remove_reader(self.process.sentinel)
        self.exited.set()

    async def _exit_code(self) -> int | None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self.exited.wait()
        return self.process.exitcode

    async def run_batch(self, batch: list[Pending], hard_timeout_s: float) -> list[WorkResult]:
        """Send one batch and await its results; WorkerDied if the process goes or hangs."""
        assert self.channel is not None
        try:
            async with asyncio.timeout(hard_timeout_s):
                kind, results = await self.channel.call([p.item for p in batch])
        except asyncio.CancelledError:
            fail_batch(batch, 500, "worker restarted while handling the request")
            raise
        except TimeoutError as exc:
            fail_batch(batch, 504, "worker did not answer in time; restarting it")
            raise WorkerDied(f"worker {self.index} hung for {hard_timeout_s:.0f}s") from exc
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            fail_batch(batch, 500, "worker process died while handling the request")
            raise WorkerDied(f"worker {self.index} died") from exc
        if kind != RESULTS:
            raise WorkerDied(f"worker {self.index} sent {kind!r} instead of results")
        return results

    async def stop(self) -> None:
        """Close our end (the worker exits on EOF), then wait briefly, then kill."""
        self.ready = False
        if self.channel is not None:
            self.channel.close()
        elif self.writer is not None:
            self.writer.close()
        if self.process is None:
            return
        if self.process.is_alive():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_GRACE_S):
                    await self.exited.wait()
        if self.process.is_alive():
            self.process.kill()
        await asyncio.to_thread(self.process.join, STOP_GRACE_S)
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.process.sentinel)


class WorkerPool:
    """N supervised workers fed from one RequestQueue."""

    def __init__(self, settings: ServeSettings, queue: RequestQueue, metrics: ServerMetrics) -> None:
        self.settings = settings
        self.queue = queue
        self.metrics = metrics
        server = settings.server
        self.placement = plan_cores(available_cores(), server.workers, server.threads, server.runtime)
        self.slots = [WorkerSlot(i, cores=self.placement.for_worker(i)) for i in range(server.workers)]
        self.fatal: str | None = None
        self.all_started = False
        self.stopping = False
        self._settings_json = settings.model_dump_json()
        self._started = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ready_count(self) -> int:
        return sum(slot.ready for slot in self.slots)

    @property
    def is_ready(self) -> bool:
        """Every worker loaded and warmed once; afterwards, at least one serving (others may restart)."""
        return self.all_started and self.ready_count > 0

    def start(self) -> None:
        apply_cores(self.placement.front)  # the front itself: every core, or those no worker has
        self._tasks = [asyncio.create_task(self._supervise(slot)) for slot in self.slots]

    async def wait_started(self) -> None:
        """Return once every worker is ready, or one failed to load (then self.fatal says why)."""
        await self._started.wait()

    def workers_info(self) -> list[dict[str, Any]]:
        return [dict(slot.info) for slot in self.slots]

    def _mark_ready(self, slot: WorkerSlot) -> None:
        slot.ready = True
        if not self.all_started and all(s.ready for s in self.slots):
            self.all_started = True
            self._started.set()

    async def _supervise(self, slot: WorkerSlot) -> None:
        failures = 0
        while True:
            try:
                await slot.spawn(self._settings_json)
            except WorkerFailed as exc:
                await slot.stop()
                if self.stopping:
                    return
                if not self.all_started:
                    self.fatal = str(exc)
                    self._started.set()
                    return
                log.error("%s; retrying", exc)
                await asyncio.sleep(RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)])
                failures += 1
                continue
            failures = 0
            self._mark_ready(slot)
            try:
                await self._dispatch_all(slot)
            except WorkerDied as exc:
                log.error("%s; restarting it", exc)
            slot.ready = False
            self.metrics.worker_restarts += 1
            await slot.stop()

    async def _next_batch(self, slot: WorkerSlot) -> list[Pending]:
        """The next batch, unless the worker exits while we wait (then WorkerDied, nothing taken)."""
        server = self.settings.server
        getter = asyncio.ensure_future(
            self.queue.get_batch(server.max_batch_size, server.max_delay_ms / 1000)
        )
        exited = asyncio.ensure_future(slot.exited.wait())
        try:
            await asyncio.wait((getter, exited), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            getter.cancel()  # the pool is stopping; get_batch gives back what it took
            raise
        finally:
            exited.cancel()
        if getter.done():
            batch = getter.result()
            if not slot.exited.is_set():
                return batch
            self.queue.put_front(batch)
        else:
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter
        raise WorkerDied(f"worker {slot.index} exited (code {slot.process.exitcode})")

    async def _dispatch_all(self, slot: WorkerSlot) -> None:
        """One dispatch loop per batch the worker may hold; the first WorkerDied stops them all."""
        loops = [asyncio.create_task(self._dispatch(slot)) for _ in range(int(slot.info.get("inflight", 1)))]
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        for task in done:
            task.result()

    async def _dispatch(self, slot: WorkerSlot) -> None:
        loop = asyncio.get_running_loop()
        hard_timeout = self.settings.server.timeout_s + HUNG_GRACE_S
        while True:
            batch = await self._next_batch(slot)
            now = loop.time()
            for pending in batch:
                pending.dispatched = now
            self.metrics.batch_size.observe(len(batch))
            results = await slot.run_batch(batch, hard_timeout)
            for pending, result in zip(batch, results, strict=True):
                if pending.live:
                    pending.future.set_result(result)

    async def stop(self) -> None:
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(slot.stop() for slot in self.slots), return_exceptions=True)
