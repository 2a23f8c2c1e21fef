"""Measure one point: start the workers (threads or processes), feed the meter, stop cleanly.

Synchronous on purpose: a study calls it from its main thread. Ctrl-C (KeyboardInterrupt) or
the caller's stop_event ends the point early and the partial measurement is still returned.
"""

from __future__ import annotations

import multiprocessing
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from deploybench.config import LoadConfig
from deploybench.load.meter import PointMeter, client_bound_reasons
from deploybench.load.result import LiveStats, PointDetail
from deploybench.load.targets import LoadError, Target
from deploybench.load.worker import StartGate, WorkerPlan, process_entry, run_worker
from deploybench.results import LoadPoint

ProgressFn = Callable[[LiveStats], None]
OPEN_LOOP_CONNECTIONS = 1024  # per worker: an open loop must not be throttled by the client
READY_TIMEOUT_S = 60.0
# fork on Linux: "spawn" re-imports the caller's __main__ (for the CLI that is every command, torch
# included: seconds per worker). The child only runs asyncio + aiohttp, never the parent's threads.
_START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"
STOP_TIMEOUT_S = 10.0


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
            worker_id=i, mode="open" if rate is not None else "closed",
            concurrency=OPEN_LOOP_CONNECTIONS if rate is not None else users[i],
            rate=rate / workers if rate is not None else None, arrival=cfg.arrival, seed=cfg.seed + i,
            phase=i / workers, tick_s=tick, max_requests=budgets[i],
            hard_stop_s=cfg.duration_s + 10.0, timeout_s=cfg.request_timeout_s,
        )
        for i in range(workers)
    ]


class WorkerPool:
    """Worker processes, one worker in a thread only for in-process targets.

    Even a single HTTP worker gets its own process: in a thread it would share the GIL with the
    caller (the meter, Rich's refresh thread, a study's threads) and stall for milliseconds.
    """

    def __init__(self, target: Target, plans: list[WorkerPlan]) -> None:
        self.target, self.plans = target, plans
        if len(plans) > 1 and not target.multiprocess:
            raise LoadError(f"{target.kind} target cannot be spread over processes: use --processes 1")
        self.use_processes = target.multiprocess
        if self.use_processes:
            ctx = multiprocessing.get_context(_START_METHOD)
            self.messages: Any = ctx.Queue()
            self.stop_flag: Any = ctx.Event()
            self.gate = StartGate(ctx.Event(), ctx.Value("d", 0.0))
            self.runners: list[Any] = [
                ctx.Process(target=process_entry,
                            args=(target, plan, self.messages, self.gate, self.stop_flag),
                            daemon=True, name=f"deploybench-load-{plan.worker_id}")
                for plan in plans
            ]
        else:
            self.messages = queue.SimpleQueue()
            self.stop_flag = threading.Event()
            self.gate = StartGate(threading.Event())
            self.runners = [
                threading.Thread(target=run_worker,
                                 args=(target, plan, self.messages.put, self.gate, self.stop_flag),
                                 daemon=True, name=f"deploybench-load-{plan.worker_id}")
                for plan in plans
            ]
        self.errors: list[str] = []

    def get(self, timeout_s: float) -> dict | None:
        try:
            message = self.messages.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if message["type"] == "error":
            self.errors.append(message["message"])
        return message

    def start(self) -> None:
        """Start every worker, wait until all are connected, then open the gate at one epoch."""
        for runner in self.runners:
            runner.start()
        ready: set[int] = set()
        deadline = perf_counter() + READY_TIMEOUT_S
        while len(ready) < len(self.plans):
            message = self.get(min(0.5, max(0.01, deadline - perf_counter())))
            if message is not None and message["type"] == "ready":
                ready.add(message["worker"])
            if self.errors:
                raise LoadError(f"load worker failed to start: {self.errors[0]}")
            dead = [plan.worker_id for plan, runner in zip(self.plans, self.runners, strict=True)
                    if plan.worker_id not in ready and not runner.is_alive()]
            if dead and message is None:
                raise LoadError(f"load worker {dead[0]} exited before it was ready (see its output above)")
            if perf_counter() > deadline:
                raise LoadError(f"load workers not ready after {READY_TIMEOUT_S:.0f} s")
        self.gate.open_at(perf_counter() + 0.02)

    def stop(self, meter: PointMeter | None) -> None:
        """Tell workers to stop, keep feeding their last messages to the meter, then join them."""
        self.stop_flag.set()
        if not self.gate.event.is_set():
            self.gate.open_at(0.0)  # release workers still waiting at the gate
        deadline = perf_counter() + STOP_TIMEOUT_S
        done: set[int] = set()
        while len(done) < len(self.runners) and perf_counter() < deadline:
            message = self.get(0.1)
            if message is None:
                if not any(runner.is_alive() for runner in self.runners):
                    break
                continue
            if message["type"] == "done":
                done.add(message["worker"])
            if meter is not None and message["type"] in ("slice", "done"):
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
    try:
        pool.start()
        interrupted = _pump(pool, meter, on_progress, stop_event)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        pool.stop(meter)
    if pool.errors and not meter.windows and not meter.warmup.requests:
        raise LoadError(f"load worker failed: {pool.errors[0]}")
    mode = "open" if rate is not None else ("inprocess" if target.kind == "inprocess" else "closed")
    point, detail = meter.point(mode, concurrency, rate)
    if interrupted:
        detail.stop_reason = "interrupted"
    detail.client_bound_reasons = client_bound_reasons(point) if point.client_bound else []
    return PointResult(point, detail, interrupted, [f"worker error: {e}" for e in pool.errors])


def _pump(pool: WorkerPool, meter: PointMeter, on_progress: ProgressFn | None,
          stop_event: threading.Event | None) -> bool:
    """Feed worker messages to the meter until it is done; True when stopped from outside."""
    while not meter.finished:
        if stop_event is not None and stop_event.is_set():
            return True
        message = pool.get(0.1)
        if message is None:
            if not any(runner.is_alive() for runner in pool.runners):
                break
            for plan, runner in zip(pool.plans, pool.runners, strict=True):
                code = getattr(runner, "exitcode", None)  # processes only; 0 = finished and said so
                if code not in (None, 0) and plan.worker_id not in meter.done:
                    pool.errors.append(f"worker {plan.worker_id} died (exit code {code})")
                    meter.feed({"type": "done", "worker": plan.worker_id})
            continue
        if meter.feed(message) and on_progress is not None:
            on_progress(meter.live())
    return False
