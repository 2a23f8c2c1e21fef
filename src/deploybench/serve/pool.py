"""The front side of the worker processes: spawn, supervise, restart, and feed them batches.

Each worker has one supervisor task: spawn (on the cores the placement plan gives it) -> wait for
READY -> run `inflight` dispatch loops { take a batch from the shared queue, send it, await the
results }. A worker holds at most `inflight` batches (1 unless it runs several streams or overlaps
decoding, serve/inflight.py), so the queue (and its wait time) stays in the front where it is
measured. A worker that dies (a native crash, an OOM kill, a hang past the timeout: exceptions never
kill it, see worker.py) fails its in-flight requests with a 500 and is restarted after a capped
exponential backoff; requests it never received go back to the head of the queue. A worker that
crashes more than max_worker_restarts times in a row without answering one batch is left failed:
/ping then says why, instead of the server restarting for ever.
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

from deploybench.sagemaker.errors import LOADING_RETRY_MS, retry_after
from deploybench.serve.batching import Pending, RequestQueue
from deploybench.serve.inflight import BatchChannel
from deploybench.serve.metrics import ServerMetrics
from deploybench.serve.placement import apply_cores, available_cores, plan_cores
from deploybench.serve.protocol import READY, RESULTS, WorkResult, read_frame, status_result
from deploybench.serve.settings import ServeSettings
from deploybench.serve.worker import worker_main

log = logging.getLogger("deploybench.serve")
RESTART_BACKOFF_BASE_S = 0.25  # then 0.5, 1, 2, ... (TorchServe backs off 1, 1, 2, 3, 5, 8 ... s)
RESTART_BACKOFF_CAP_S = 30.0
HUNG_GRACE_S = 5.0
STOP_GRACE_S = 5.0
SERVICE_EWMA_WEIGHT = 0.2  # weight of the newest batch in the per-request service time estimate


class WorkerFailed(RuntimeError):
    """The worker could not load its model (message from the worker), or died while loading."""


class WorkerDied(RuntimeError):
    """A ready worker went away; the supervisor restarts it."""


def restart_delay(crashes: int) -> float:
    """Seconds to wait before restarting after `crashes` crashes in a row (1, 2, ...)."""
    return min(RESTART_BACKOFF_BASE_S * 2 ** (crashes - 1), RESTART_BACKOFF_CAP_S)


def fail_batch(
    batch: list[Pending], status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    for pending in batch:
        if pending.live:
            pending.future.set_result(status_result(pending.item.rid, status, message, headers))


@dataclass
class WorkerSlot:
    """One worker position: the current process, its socket streams, and whether it is ready."""

    index: int
    process: Any = None
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    ready: bool = False
    failed: str | None = None  # why this worker is given up on, once it is
    answered: int = 0  # batches answered since the last spawn
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
        self.answered = 0
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
        self.answered += 1
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
        self.service_s = 0.0  # moving estimate of one request's time in a worker (for Retry-After)
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

    @property
    def failed(self) -> str | None:
        """Why the pool can no longer serve: every worker was given up on after crashing in a row."""
        if self.slots and all(slot.failed for slot in self.slots):
            return "; ".join(slot.failed or "" for slot in self.slots)
        return None

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
        crashes = 0
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
                reason = str(exc)
            else:
                self._mark_ready(slot)
                reason = await self._serve_until_death(slot)
                if slot.answered:
                    crashes = 0  # it served between crashes: not a model that crashes on every batch
            crashes += 1
            if not await self._restart_after(slot, crashes, reason):
                return

    async def _serve_until_death(self, slot: WorkerSlot) -> str:
        try:
            await self._dispatch_all(slot)
        except WorkerDied as exc:
            reason = str(exc)
        slot.ready = False
        if self.ready_count == 0:  # nobody left to serve the queue: answer it now, not after a restart
            retry = retry_after(LOADING_RETRY_MS)
            fail_batch(self.queue.drain(), 503, "the worker crashed and is restarting", retry)
        await slot.stop()
        return reason

    async def _restart_after(self, slot: WorkerSlot, crashes: int, reason: str) -> bool:
        """Back off before the next spawn; False (and the slot failed) past max_worker_restarts."""
        if crashes > self.settings.server.max_worker_restarts:
            slot.failed = (
                f"worker {slot.index} crashed {crashes} times in a row without answering a batch "
                f"(last: {reason}); not restarting it"
            )
            log.error("%s", slot.failed)
            return False
        delay = restart_delay(crashes)
        log.error("%s; restarting it in %.2g s", reason, delay)
        await asyncio.sleep(delay)
        self.metrics.worker_restarts += 1
        return True

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
            per_request = (loop.time() - now) / len(batch)
            weight = SERVICE_EWMA_WEIGHT if self.service_s else 1.0  # the first batch sets it
            self.service_s += weight * (per_request - self.service_s)
            for pending, result in zip(batch, results, strict=True):
                if pending.live:
                    pending.future.set_result(result)

    async def stop(self) -> None:
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(slot.stop() for slot in self.slots), return_exceptions=True)
