"""One load worker: an event loop (uvloop) that drives a target and streams raw time slices.

A worker runs in a thread (one process) or in its own process (--processes P). It never decides
when a point is done: every tick it sends the slice it recorded (sparse histogram buckets, counts,
its own CPU time) to the parent, which builds windows and tells all workers when to stop. On stop
it sends the slice up to that moment, then waits for every request still in flight (each ends by
itself within the request timeout; what is left after that counts as timed out) and sends those
late replies as the final "tail" slice: no issued request is ever dropped.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter, process_time, thread_time
from typing import Any, Literal, Protocol

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a pinned dependency; keep working without it
    uvloop = None

from deploybench.lifetime import die_with_parent
from deploybench.load.shapes import LoopState, Recorder, arrival_offsets, closed_client, open_loop
from deploybench.load.stats import sparse_from_values
from deploybench.load.targets import Target, TargetClient

Sink = Callable[[dict[str, Any]], None]
DRAIN_MARGIN_S = 1.0  # beyond the request timeout: every request has ended by itself by then


class Flag(Protocol):
    """threading.Event or multiprocessing.Event."""

    def is_set(self) -> bool: ...
    def set(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class _Box:
    """Thread-mode stand-in for multiprocessing.Value."""

    def __init__(self) -> None:
        self.value = 0.0


class StartGate:
    """All workers connect first, then start sending at one shared monotonic epoch."""

    def __init__(self, event: Flag, value: Any | None = None) -> None:
        self.event = event
        self.value = value if value is not None else _Box()

    def open_at(self, epoch: float) -> None:
        self.value.value = epoch
        self.event.set()

    def wait_epoch(self, timeout_s: float) -> float | None:
        return float(self.value.value) if self.event.wait(timeout_s) else None


@dataclass
class WorkerPlan:
    """What one worker does for one point (picklable)."""

    worker_id: int
    mode: Literal["closed", "open"]
    concurrency: int  # closed: users of this worker; open: connection limit
    rate: float | None
    arrival: str
    seed: int
    phase: float
    tick_s: float
    max_requests: int | None
    hard_stop_s: float  # safety net if the parent vanishes: stop this long after the epoch
    timeout_s: float
    start_timeout_s: float = 60.0
    intervals_us: list[int] | None = None  # arrival "intervals": whole trace; this worker sends its share
    workers: int = 1


def _slice(index: int, rec: Recorder, duration: float, cpu: float, final: bool) -> dict:
    return {
        "type": "slice",
        "index": index,
        "final": final,
        "duration_s": duration,
        "cpu_s": cpu,
        "latency": sparse_from_values(rec.latencies_us),
        "lateness": sparse_from_values(rec.lateness_us),
        "gap": sparse_from_values(rec.gaps_us),
        "ok": rec.ok,
        "errors": dict(rec.errors),
        "bytes_sent": rec.bytes_sent,
        "bytes_received": rec.bytes_received,
        "sends": rec.sends,
        "late_sends": rec.late_sends,
        "timing_sum": dict(rec.timing_sum),
        "timing_count": dict(rec.timing_count),
    }


class _Ticker:
    """Cuts the recording into slices aligned to the shared epoch."""

    def __init__(
        self, plan: WorkerPlan, rec: Recorder, sink: Sink, epoch: float, cpu_clock: Callable[[], float]
    ) -> None:
        self.plan, self.rec, self.sink, self.epoch = plan, rec, sink, epoch
        self.cpu_clock = cpu_clock
        self.index = 0
        self.last_flush = epoch
        self.last_cpu = cpu_clock()

    def flush(self, final: bool = False) -> None:
        now, cpu = perf_counter(), self.cpu_clock()
        message = _slice(self.index, self.rec, now - self.last_flush, cpu - self.last_cpu, final)
        message["worker"] = self.plan.worker_id
        self.sink(message)
        self.rec.reset()
        self.index += 1
        self.last_flush, self.last_cpu = now, cpu

    async def run(self, stop: Flag, work_done: Callable[[], bool]) -> None:
        """Flush every tick until told to stop (or out of work); the slice up to that moment too."""
        hard_stop = self.epoch + self.plan.hard_stop_s
        while True:
            delay = self.epoch + (self.index + 1) * self.plan.tick_s - perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if stop.is_set() or work_done() or perf_counter() >= hard_stop:
                self.flush()
                return
            self.flush()


async def _drain(tasks: set[asyncio.Task[Any]] | list[asyncio.Task[Any]], wait_s: float) -> None:
    """Wait for requests in flight; cancel what is left (each records itself as timed out)."""
    pending = [task for task in tasks if not task.done()]
    if pending:
        _, still = await asyncio.wait(pending, timeout=wait_s)
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)


async def _drive(
    target: Target,
    client: TargetClient,
    plan: WorkerPlan,
    epoch: float,
    sink: Sink,
    stop: Flag,
    cpu_clock: Callable[[], float],
) -> None:
    rec, state = Recorder(), LoopState(budget=plan.max_requests)
    payloads = target.payloads
    await asyncio.sleep(max(0.0, epoch - perf_counter()))
    ticker = _Ticker(plan, rec, sink, epoch, cpu_clock)
    wait_s = plan.timeout_s + DRAIN_MARGIN_S
    if plan.mode == "closed":
        users = [
            asyncio.create_task(closed_client(client, payloads, plan.worker_id + i, rec, state))
            for i in range(plan.concurrency)
        ]
        await ticker.run(stop, lambda: all(task.done() for task in users))
        state.running = False
        await _drain(users, wait_s)
    else:
        assert plan.rate is not None
        offsets = arrival_offsets(
            plan.rate, plan.arrival, plan.seed, plan.phase, plan.intervals_us, (plan.worker_id, plan.workers)
        )
        inflight: set[asyncio.Task[None]] = set()
        scheduler = asyncio.create_task(open_loop(client, payloads, offsets, epoch, rec, state, inflight))
        await ticker.run(stop, lambda: scheduler.done() and not inflight)
        state.running = False
        scheduler.cancel()  # it only sleeps until the next send: nothing in flight is lost
        await asyncio.gather(scheduler, return_exceptions=True)
        await _drain(set(inflight), wait_s)
    ticker.flush(final=True)


async def _worker_main(
    target: Target, plan: WorkerPlan, sink: Sink, gate: StartGate, stop: Flag, cpu_clock: Callable[[], float]
) -> None:
    client = await target.open(plan.concurrency, plan.timeout_s)
    try:
        sink({"type": "ready", "worker": plan.worker_id})
        loop = asyncio.get_running_loop()
        epoch = await loop.run_in_executor(None, gate.wait_epoch, plan.start_timeout_s)
        if epoch is not None and not stop.is_set():
            await _drive(target, client, plan, epoch, sink, stop, cpu_clock)
    finally:
        await client.close()


def _new_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()


def run_worker(
    target: Target,
    plan: WorkerPlan,
    sink: Sink,
    gate: StartGate,
    stop: Flag,
    cpu_clock: Callable[[], float] | None = None,
) -> None:
    """Run one worker to completion; failures become an "error" message, never a silent hang.

    CPU time: the event-loop thread's, or the whole process's where the work happens in a thread
    pool (Target.cpu_scope) or the worker is a process of its own.
    """
    if cpu_clock is None:
        cpu_clock = process_time if target.cpu_scope == "process" else thread_time
    try:
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            runner.run(_worker_main(target, plan, sink, gate, stop, cpu_clock))
    except BaseException as exc:
        sink({"type": "error", "worker": plan.worker_id, "message": f"{type(exc).__name__}: {exc}"})
    finally:
        sink({"type": "done", "worker": plan.worker_id})


def process_entry(
    target: Target, plan: WorkerPlan, conn: Any, gate: StartGate, stop: Flag, environ: dict[str, str]
) -> None:
    """Entry point of a worker process: Ctrl-C goes to the parent, which stops us via `stop`.

    Messages go down this worker's own pipe (no feeder thread competing with the event loop for
    the GIL); the parent reads them as they come and sees at once if this process dies. The worker
    takes the caller's environment as it is now (credentials, proxies): the fork server that starts
    it was started earlier, with the environment of then.
    """
    die_with_parent(signal.SIGKILL)  # the fork server exits with the study: so do we, mid-point too
    os.environ.clear()
    os.environ.update(environ)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run_worker(target, plan, conn.send, gate, stop, cpu_clock=process_time)
    finally:
        conn.close()
