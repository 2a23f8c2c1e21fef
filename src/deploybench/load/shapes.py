"""Load shapes: closed loop (N in flight) and open loop (scheduled arrivals), plus the recorder.

Open-loop latency runs from the SCHEDULED send time, always: a stalled server or a stalled client
(GC pause, preempted process, the study's own work) shows in the percentiles instead of vanishing
(coordinated omission). How late each send went out is recorded too, as its own distribution: it
is the evidence for the client-bound verdict. Closed loop records instead the client's own time
from a reply to the next send of that user. Everything here runs inside one worker's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from time import perf_counter

from deploybench.load.targets import TargetClient

LATE_S = 0.001  # a send starting more than 1 ms after its schedule counts as late
EARLY_FIRE_S = 0.0005  # uvloop's timers have ~1 ms resolution: fire when this close to the schedule
MAX_BACKLOG = 20_000  # open loop: requests in flight per worker before new ones count as dropped
TIMEOUT = "timeout"  # the error class of a request with no reply within the request timeout
BACKLOG = "client_backlog"  # the error class of a send the client refused (too many in flight)


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
    """The current slice's raw values; the worker's ticker takes and resets it every tick.

    Latencies, lateness and gaps are kept as plain microsecond ints (an append per request) and
    turned into histogram buckets once per tick, off the request path.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.latencies_us: list[int] = []
        self.lateness_us: list[int] = []
        self.gaps_us: list[int] = []
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
        """One finished request (hot path)."""
        self.bytes_sent += sent
        self.bytes_received += received
        if error is not None:
            self.errors[error] = self.errors.get(error, 0) + 1
            return
        self.ok += 1
        self.latencies_us.append(int(latency_s * 1_000_000))
        if timing:
            for name, dur in parse_server_timing(timing):
                self.timing_sum[name] = self.timing_sum.get(name, 0.0) + dur
                self.timing_count[name] = self.timing_count.get(name, 0) + 1

    def sent(self, lateness_s: float) -> None:
        """One send started lateness_s after its schedule (open loop)."""
        self.sends += 1
        self.lateness_us.append(int(lateness_s * 1_000_000))
        if lateness_s > LATE_S:
            self.late_sends += 1


@dataclass
class LoopState:
    """Shared between a worker's coroutines: whether to keep sending, and the request budget."""

    running: bool = True
    budget: int | None = None  # requests this worker may still start; None = unbounded

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
    last_end: float | None = None
    while state.take():
        payload = payloads[index % count]
        index += 1
        start = perf_counter()
        rec.sends += 1
        if last_end is not None:
            rec.gaps_us.append(int((start - last_end) * 1_000_000))
        try:
            error, end, received, timing = await send(payload)
        except asyncio.CancelledError:  # still unanswered when the wait for late replies ran out
            rec.record(perf_counter() - start, TIMEOUT, len(payload), 0, None)
            raise
        rec.record(end - start, error, len(payload), received, timing)
        last_end = perf_counter()


def arrival_offsets(
    rate: float,
    arrival: str,
    seed: int,
    phase: float = 0.0,
    intervals_us: list[int] | None = None,
    share: tuple[int, int] = (0, 1),
) -> Iterator[float]:
    """Send times in seconds from the start: evenly spaced, seeded Poisson (exponential gaps), or a
    given trace of gaps replayed in order and repeated. share (i, n): worker i of n sends the trace's
    sends i, i+n, ..., so the n workers together keep exactly the trace's schedule."""
    if arrival == "intervals":
        yield from itertools.islice(_replayed(intervals_us or []), share[0], None, share[1])
        return
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


def _replayed(intervals_us: list[int]) -> Iterator[float]:
    if not intervals_us:
        raise ValueError("arrival 'intervals' needs at least one interval")
    clock = 0.0
    for gap in itertools.cycle(intervals_us):
        clock += gap / 1e6
        yield clock


async def _timed_send(client: TargetClient, payload: bytes, scheduled: float, rec: Recorder) -> None:
    """Time one open-loop request from its scheduled time; from its real send when that was earlier
    (a send up to EARLY_FIRE_S ahead of schedule must not take its head start off the latency)."""
    origin = min(perf_counter(), scheduled)
    try:
        error, end, received, timing = await client.send(payload)
    except asyncio.CancelledError:  # still unanswered when the wait for late replies ran out
        rec.record(perf_counter() - origin, TIMEOUT, len(payload), 0, None)
        raise
    rec.record(end - origin, error, len(payload), received, timing)


async def open_loop(
    client: TargetClient,
    payloads: list[bytes],
    offsets: Iterator[float],
    epoch: float,
    rec: Recorder,
    state: LoopState,
    inflight: set[asyncio.Task[None]],
) -> None:
    """Fire requests at their scheduled times whatever the server does; in-flight tasks stay in `inflight`."""
    count = len(payloads)
    for index, offset in enumerate(offsets):
        scheduled = epoch + offset
        delay = scheduled - perf_counter()
        if delay <= EARLY_FIRE_S:
            await asyncio.sleep(0)  # let replies in even when behind schedule
        while delay > EARLY_FIRE_S:  # a uvloop timer may fire up to 1 ms early: sleep again
            await asyncio.sleep(delay)
            delay = scheduled - perf_counter()
        if not state.take():
            break
        rec.sent(max(0.0, perf_counter() - scheduled))
        if len(inflight) >= MAX_BACKLOG:  # bounded memory against a dead-slow server
            rec.record(0.0, BACKLOG, 0, 0, None)
            continue
        task = asyncio.create_task(_timed_send(client, payloads[index % count], scheduled, rec))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
