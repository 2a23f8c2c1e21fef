"""Measure one point: start the workers (threads or processes), feed the meter, stop cleanly.

Synchronous on purpose: a study calls it from its main thread. Ctrl-C (KeyboardInterrupt) or
the caller's stop_event ends the point early and the partial measurement is still returned.
While a point runs this process only waits: it wakes when a worker sends a slice (a few times a
second) or dies (its process sentinel), so it stays out of the server's way; what it spends is
recorded with the point (client.controller_cpu_pct).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter, process_time
from typing import Any

from deploybench.config import LoadConfig
from deploybench.lifetime import FORKSERVER_STARTER_ENV
from deploybench.load.channels import Channel, PipeChannel, QueueChannel
from deploybench.load.load_report import LiveStats, PointDetail
from deploybench.load.meter import PointMeter
from deploybench.load.stats import bucket_values
from deploybench.load.targets import LoadError, Target
from deploybench.load.worker import DRAIN_MARGIN_S, StartGate, WorkerPlan, process_entry, run_worker
from deploybench.results import LoadPoint

ProgressFn = Callable[[LiveStats], None]
OPEN_LOOP_CONNECTIONS = 1024  # per worker: an open loop must not be throttled by the client
READY_TIMEOUT_S = 60.0
# Load workers start from a fork server, never by forking the caller: a study or a test suite holds
# threads (torch's OpenMP pool, Ray, boto3's pools) whose locks a plain fork may copy held, so a
# forked child can hang or crash before it is ready. The fork server is a fresh interpreter that
# imports only what a worker runs (not the caller's __main__, which "spawn" would re-import for
# every worker), and forks each worker from that clean, single-threaded state.
_START_METHOD = "forkserver" if sys.platform.startswith("linux") else "spawn"
# The guard first: the fork server then exits with this process (load.forkserver_guard).
_WORKER_MODULES = ["deploybench.load.forkserver_guard", "deploybench.load.worker", "deploybench.load.targets"]


def _worker_context() -> Any:
    ctx = multiprocessing.get_context(_START_METHOD)
    if _START_METHOD == "forkserver":
        os.environ[FORKSERVER_STARTER_ENV] = str(os.getpid())  # read by the guard in a fork server we start
        ctx.set_forkserver_preload(_WORKER_MODULES)
    return ctx


LIVE_PERIOD_S = 1.0  # the live line is news for a human: once a second is plenty
IDLE_WAKE_S = 0.5  # with nothing arriving, look at the stop event this often


@dataclass
class PointResult:
    """One measured point, its detail record, and whether it was cut short."""

    point: LoadPoint
    detail: PointDetail
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def make_plans(cfg: LoadConfig, concurrency: int | None, rate: float | None) -> list[WorkerPlan]:
    """Spread one point over cfg.processes workers (never more workers than closed-loop users)."""
    workers = cfg.processes if rate is not None else min(cfg.processes, concurrency or 1)
    users = _split(concurrency or 1, workers)
    budgets = _split(cfg.max_requests, workers) if cfg.max_requests else [None] * workers
    tick = max(0.05, min(0.25, cfg.window_s / 4))
    return [
        WorkerPlan(
            worker_id=i,
            mode="open" if rate is not None else "closed",
            concurrency=OPEN_LOOP_CONNECTIONS if rate is not None else users[i],
            rate=rate / workers if rate is not None else None,
            arrival=cfg.arrival,
            seed=cfg.seed + i,
            phase=i / workers,
            tick_s=tick,
            max_requests=budgets[i],
            hard_stop_s=cfg.duration_s + 10.0,
            timeout_s=cfg.request_timeout_s,
            intervals_us=cfg.request_intervals_us if rate is not None else None,
            workers=workers,
        )
        for i in range(workers)
    ]


class WorkerPool:
    """Worker processes, one worker in a thread only for in-process targets.

    Even a single HTTP worker gets its own process: in a thread it would share the GIL with the
    caller (the meter, the display, a study's threads) and stall for milliseconds.
    """

    def __init__(self, target: Target, plans: list[WorkerPlan]) -> None:
        self.target, self.plans = target, plans
        if len(plans) > 1 and not target.multiprocess:
            raise LoadError(f"{target.kind} target cannot be spread over processes: use --processes 1")
        bucket_values()  # built once, before the point: the meter needs it
        self.use_processes = target.multiprocess
        self.errors: list[str] = []
        if self.use_processes:
            ctx = _worker_context()
            environ = dict(os.environ)
            self.stop_flag: Any = ctx.Event()
            self.gate = StartGate(ctx.Event(), ctx.Value("d", 0.0))
            pipes = {plan.worker_id: ctx.Pipe(duplex=False) for plan in plans}
            self.runners: list[Any] = [
                ctx.Process(
                    target=process_entry,
                    args=(target, plan, pipes[plan.worker_id][1], self.gate, self.stop_flag, environ),
                    daemon=True,
                    name=f"deploybench-load-{plan.worker_id}",
                )
                for plan in plans
            ]
            self.channel: Channel = PipeChannel(
                {w: ends[0] for w, ends in pipes.items()}, dict(zip(pipes, self.runners, strict=True))
            )
            self._child_ends = [ends[1] for ends in pipes.values()]
        else:
            self.stop_flag = threading.Event()
            self.gate = StartGate(threading.Event())
            self.channel = QueueChannel(len(plans))
            self.runners = [
                threading.Thread(
                    target=run_worker,
                    args=(target, plan, self.channel.put, self.gate, self.stop_flag),
                    daemon=True,
                    name=f"deploybench-load-{plan.worker_id}",
                )
                for plan in plans
            ]
            self._child_ends = []

    def receive(self, timeout_s: float) -> list[dict]:
        messages = self.channel.receive(timeout_s)
        self.errors.extend(m["message"] for m in messages if m["type"] in ("error", "died"))
        return messages

    def start(self) -> None:
        """Start every worker, wait until all are connected, then open the gate at one epoch."""
        for runner in self.runners:
            runner.start()
        for end in self._child_ends:
            end.close()  # the children hold their ends; ours would keep a dead child's pipe open
        ready: set[int] = set()
        deadline = perf_counter() + READY_TIMEOUT_S
        while len(ready) < len(self.plans):
            for message in self.receive(min(0.5, max(0.01, deadline - perf_counter()))):
                if message["type"] == "ready":
                    ready.add(message["worker"])
                elif message["type"] == "died":
                    raise LoadError(f"{message['message']} before it was ready (see its output above)")
            if self.errors:
                raise LoadError(f"load worker failed to start: {self.errors[0]}")
            if perf_counter() > deadline:
                raise LoadError(f"load workers not ready after {READY_TIMEOUT_S:.0f} s")
        self.gate.open_at(perf_counter() + 0.02)

    def stop(self, meter: PointMeter | None, wait_s: float) -> None:
        """Tell workers to stop, keep feeding their last messages (the tail) to the meter, join them."""
        self.stop_flag.set()
        if not self.gate.event.is_set():
            self.gate.open_at(0.0)  # release workers still waiting at the gate
        deadline = perf_counter() + wait_s
        while not self.channel.all_ended() and perf_counter() < deadline:
            for message in self.receive(min(IDLE_WAKE_S, max(0.01, deadline - perf_counter()))):
                if meter is not None and message["type"] in ("slice", "done", "died", "error"):
                    meter.feed(message)
        for runner in self.runners:
            runner.join(timeout=max(0.1, deadline - perf_counter()))
            if self.use_processes and runner.is_alive():
                runner.terminate()


def _label(concurrency: int | None, rate: float | None) -> str:
    return f"rate {rate:g}/s" if rate is not None else f"concurrency {concurrency}"


def measure_point(
    target: Target,
    cfg: LoadConfig,
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    on_progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
) -> PointResult:
    """Run one closed-loop (concurrency) or open-loop (rate) point to a stable verdict or a bound."""
    if (concurrency is None) == (rate is None):
        raise LoadError("a point needs exactly one of concurrency or rate")
    plans = make_plans(cfg, concurrency, rate)
    pool = WorkerPool(target, plans)
    meter = PointMeter(cfg, len(plans), _label(concurrency, rate))
    interrupted = False
    cpu_start, wall_start = process_time(), perf_counter()
    try:
        pool.start()
        cpu_start, wall_start = process_time(), perf_counter()
        interrupted = _pump(pool, meter, on_progress, stop_event)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        controller = _share(process_time() - cpu_start, perf_counter() - wall_start)
        pool.stop(meter, cfg.request_timeout_s + DRAIN_MARGIN_S + 2.0)
    if pool.errors and not meter.windows and not meter.warmup.requests:
        raise LoadError(f"load worker failed: {pool.errors[0]}")
    mode = "open" if rate is not None else ("inprocess" if target.kind == "inprocess" else "closed")
    point, detail = meter.point(mode, concurrency, rate)
    if point.client is not None:
        point.client.controller_cpu_pct = controller
    if interrupted:
        detail.stop_reason = "interrupted"
    return PointResult(point, detail, interrupted, [f"worker error: {e}" for e in pool.errors])


def _share(cpu_s: float, wall_s: float) -> float | None:
    """CPU seconds over wall seconds as a % of all the machine's logical cores."""
    return round(100.0 * cpu_s / wall_s / (os.cpu_count() or 1), 2) if wall_s > 0 else None


def _pump(
    pool: WorkerPool, meter: PointMeter, on_progress: ProgressFn | None, stop_event: threading.Event | None
) -> bool:
    """Feed worker messages to the meter until it is done; True when stopped from outside."""
    next_live = perf_counter() + LIVE_PERIOD_S
    while not meter.finished:
        if stop_event is not None and stop_event.is_set():
            return True
        for message in pool.receive(IDLE_WAKE_S):
            meter.feed(message)
        if pool.channel.all_ended():
            break  # every worker said done or died, and the meter has seen it
        if on_progress is not None and perf_counter() >= next_live:
            next_live = perf_counter() + LIVE_PERIOD_S
            on_progress(meter.live())
    return False
