"""Load shapes: closed loop (N in flight) and open loop (scheduled arrivals), plus the recorder.

Open-loop latency runs from the SCHEDULED send time (or the actual start if the timer fired a
little early), so a stalled server shows up in the percentiles instead of silently slowing the
client down (coordinated omission). Everything here runs inside one worker's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from time import perf_counter

from deploybench.load.stats import new_histogram
from deploybench.load.targets import TargetClient

LATE_S = 0.001  # a send starting more than 1 ms after its schedule counts as late
# closed loop: event-loop wake-up lateness counted above each of these (the parent picks the one
# that matters for the point: 1 ms, or 1% of its p50 when requests take much longer)
LAG_THRESHOLDS_MS = (1, 2, 5, 10, 20, 50, 100)
EARLY_FIRE_S = 0.0005  # timers have ~1 ms resolution: fire when this close to the schedule
MAX_BACKLOG = 20_000  # open loop: requests in flight per worker before new ones count as dropped


def parse_server_timing(header: str) -> list[tuple[str, float]]:
    """`queue;dur=1.2, infer;desc="x";dur=3` -> [("queue", 1.2), ("infer", 3.0)]; junk is skipped."""
    phases = []
    for metric in header.split(","):
        parts = metric.split(";")
        name = parts[0].strip()
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if key.strip() == "dur" and name:
                with contextlib.suppress(ValueError):
                    phases.append((name, float(value.strip().strip('"'))))
                break
    return phases


class Recorder:
    """The current slice's raw counts; the worker's ticker takes and resets it every tick."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.hist = new_histogram()
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.bytes_sent = 0
        self.bytes_received = 0
        self.sends = 0
        self.late_sends = 0
        self.timing_sum: dict[str, float] = {}
        self.timing_count: dict[str, int] = {}

    def record(
        self, latency_s: float, error: str | None, sent: int, received: int, timing: str | None
    ) -> None:
        """One finished request (hot path: no allocation beyond the histogram's counter bump)."""
        self.bytes_sent += sent
        self.bytes_received += received
        if error is not None:
            self.errors[error] = self.errors.get(error, 0) + 1
            return
        self.ok += 1
        self.hist.record_value(max(1, int(latency_s * 1_000_000)))
        if timing:
            for name, dur in parse_server_timing(timing):
                self.timing_sum[name] = self.timing_sum.get(name, 0.0) + dur
                self.timing_count[name] = self.timing_count.get(name, 0) + 1


@dataclass
class LoopState:
    """Shared between a worker's coroutines: whether to keep sending, and the request budget."""

    running: bool = True
    budget: int | None = None  # requests this worker may still start; None = unbounded
    lag_samples: int = 0
    lag_late: list[int] = field(default_factory=lambda: [0] * len(LAG_THRESHOLDS_MS))

    def take(self) -> bool:
        """Claim one request from the budget; False once the worker must stop sending."""
        if not self.running:
            return False
        if self.budget is None:
            return True
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True


async def closed_client(
    client: TargetClient, payloads: list[bytes], offset: int, rec: Recorder, state: LoopState
) -> None:
    """One of N closed-loop users: send, wait for the reply, send the next."""
    count = len(payloads)
    index = offset
    send = client.send
    while state.take():
        payload = payloads[index % count]
        index += 1
        start = perf_counter()
        rec.sends += 1
        error, end, received, timing = await send(payload)
        rec.record(end - start, error, len(payload), received, timing)


def arrival_offsets(rate: float, arrival: str, seed: int, phase: float = 0.0) -> Iterator[float]:
    """Send times in seconds from the start: evenly spaced, or seeded Poisson (exponential gaps)."""
    if arrival == "constant":
        index = 0
        while True:
            yield (index + phase) / rate
            index += 1
    rng = random.Random(seed)
    clock = 0.0
    while True:
        clock += rng.expovariate(rate)
        yield clock


async def _timed_send(
    client: TargetClient, payload: bytes, origin: float, rec: Recorder
) -> None:
    error, end, received, timing = await client.send(payload)
    rec.record(end - origin, error, len(payload), received, timing)


async def open_loop(
    client: TargetClient,
    payloads: list[bytes],
    offsets: Iterator[float],
    epoch: float,
    rec: Recorder,
    state: LoopState,
) -> set[asyncio.Task[None]]:
    """Fire requests at their scheduled times whatever the server does; returns in-flight tasks."""
    inflight: set[asyncio.Task[None]] = set()
    count = len(payloads)
    for index, offset in enumerate(offsets):
        scheduled = epoch + offset
        delay = scheduled - perf_counter()
        if delay > EARLY_FIRE_S:
            await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)  # let replies in even when behind schedule
        if not state.take():
            break
        start = perf_counter()
        rec.sends += 1
        if start - scheduled > LATE_S:
            rec.late_sends += 1
        if len(inflight) >= MAX_BACKLOG:  # bounded memory against a dead-slow server
            rec.record(0.0, "client_backlog", 0, 0, None)
            continue
        payload = payloads[index % count]
        task = asyncio.create_task(_timed_send(client, payload, max(start, scheduled), rec))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
    return inflight


async def lag_sampler(state: LoopState, period_s: float = 0.005) -> None:
    """Closed loop has no schedule to be late for: measure how late the event loop wakes instead."""
    while state.running:
        target = perf_counter() + period_s
        await asyncio.sleep(period_s)
        state.lag_samples += 1
        lag_ms = (perf_counter() - target) * 1000
        if lag_ms > LAG_THRESHOLDS_MS[0]:
            for index, threshold in enumerate(LAG_THRESHOLDS_MS):
                if lag_ms > threshold:
                    state.lag_late[index] += 1
