"""The M/D/1 check of bench/loadgen.py: our open loop against MLPerf LoadGen's Server scenario.

One server serves one request at a time for exactly D ms (bench/trivial_server.py ... serial);
Poisson arrivals at 40% and 70% of its capacity make an M/D/1 queue. Two independent open-loop
clients drive it in turn: ours (deploybench.load, Poisson schedule, latency from the schedule) and
LoadGen's Python bindings (`pip install mlcommons-loadgen`, the `bench` extra), whose C++ core
schedules the queries and times each from its scheduled time to QuerySamplesComplete; its SUT posts
each query over aiohttp from a thread. The exact M/D/1 sojourn time (queueing theory; no HTTP) is
printed beside them.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import tempfile
import threading
import time
from pathlib import Path

import uvloop

from deploybench.config import LoadConfig
from deploybench.load import HttpTarget, run_load

SUMMARY_FIELDS = {
    "p50_ms": r"50\.00 percentile latency \(ns\)\s*:\s*(\d+)",
    "p99_ms": r"99\.00 percentile latency \(ns\)\s*:\s*(\d+)",
    "mean_ms": r"Mean latency \(ns\)\s*:\s*(\d+)",
}


def _wait_cdf(t: float, rate: float, service_s: float) -> float:
    """P(waiting time <= t) in M/D/1 (Erlang's formula)."""
    rho = rate * service_s
    total = 0.0
    for k in range(int(t / service_s) + 1):
        x = rate * (k * service_s - t)
        total += x**k / math.factorial(k) * math.exp(-x)
    return (1 - rho) * total


def md1_sojourn_ms(rate: float, service_s: float, quantile: float) -> float:
    """The quantile of time in system (wait + service) of an M/D/1 queue, by bisection on the CDF."""
    if _wait_cdf(0.0, rate, service_s) >= quantile:
        return service_s * 1000
    low, high = 0.0, service_s
    while _wait_cdf(high, rate, service_s) < quantile:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if _wait_cdf(mid, rate, service_s) < quantile else (low, mid)
    return (high + service_s) * 1000


def run_ours(
    url: str, body: bytes, rate: float, duration_s: float, seed: int, intervals_us: list[int] | None = None
) -> dict[str, float]:
    """Our open loop, every window kept (no early stop), latency from the schedule: our own seeded
    Poisson schedule, or (intervals_us) exactly the schedule LoadGen issued, every request counted."""
    replay = intervals_us is not None
    cfg = LoadConfig(
        rate=None if replay else rate,
        arrival="intervals" if replay else "poisson",
        request_intervals_us=intervals_us,
        max_requests=len(intervals_us) if replay else None,
        seed=seed,
        warmup_s=0.0 if replay else 2.0,
        warmup_requests=0,
        window_s=5.0,
        min_window_requests=1,
        max_windows=1000,
        stability_tolerance=1e-6,
        duration_s=duration_s + 2.0,
        request_timeout_s=10.0,
    )
    point = run_load(HttpTarget(url, [body]), cfg).points[0]
    lateness = point.client.send_lateness if point.client else None
    return {
        "p50_ms": point.latency.p50_ms,
        "p99_ms": point.latency.p99_ms,
        "mean_ms": point.latency.mean_ms,
        "rps": point.throughput_rps,
        "requests": point.accounting.issued,
        "timed": point.latency.count,
        "lateness_p99_ms": lateness.p99_ms if lateness else float("nan"),
    }


class _AiohttpSut:
    """LoadGen's system under test: each query is one POST, answered from an aiohttp loop thread."""

    def __init__(self, url: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        import aiohttp

        self.url, self.body, self.headers = url, body, headers or {}
        self.issued: list[float] = []  # when LoadGen issued each query (perf_counter), its schedule
        # the same event loop and HTTP client as ours (uvloop + aiohttp): what differs is the schedule
        # keeping and the timing, LoadGen's (C++) against ours, which is what this check compares
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="loadgen-sut")
        self.thread.start()
        connector = asyncio.run_coroutine_threadsafe(self._session(aiohttp), self.loop)
        self.session = connector.result(timeout=10)

    @staticmethod
    async def _session(aiohttp):  # type: ignore[no-untyped-def]
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1024))

    async def _one(self, sample_id: int) -> None:
        import mlperf_loadgen as lg

        async with self.session.post(
            self.url, data=self.body, headers=self.headers, allow_redirects=False
        ) as resp:
            await resp.read()
        lg.QuerySamplesComplete([lg.QuerySampleResponse(sample_id, 0, 0)])

    def issue(self, samples: list) -> None:  # type: ignore[type-arg]
        for sample in samples:
            self.issued.append(time.perf_counter())
            asyncio.run_coroutine_threadsafe(self._one(sample.id), self.loop)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.session.close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def _settings(rate: float, duration_s: float, seed: int, bound_ms: float = 1000.0):  # type: ignore[no-untyped-def]
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Server
    settings.mode = lg.TestMode.PerformanceOnly
    settings.server_target_qps = rate
    settings.server_target_latency_ns = int(bound_ms * 1_000_000)
    settings.server_target_latency_percentile = 0.99
    settings.min_duration_ms = int(duration_s * 1000)
    settings.max_duration_ms = int(duration_s * 1000) + 30_000
    settings.min_query_count = int(rate * duration_s * 0.9)
    settings.schedule_rng_seed = seed
    return settings


def run_loadgen(
    url: str,
    body: bytes,
    rate: float,
    duration_s: float,
    seed: int,
    *,
    headers: dict[str, str] | None = None,
    bound_ms: float = 1000.0,
) -> tuple[dict[str, float], list[int]]:
    """MLPerf LoadGen, Server scenario, against the same endpoint: figures from its summary log, and
    the gaps between the queries it issued (its Poisson schedule, as it really went out). bound_ms:
    the p99 latency target LoadGen judges the run VALID against (`valid`: 1.0 or 0.0)."""
    import mlperf_loadgen as lg

    sut_impl = _AiohttpSut(url, body, headers)
    sut = lg.ConstructSUT(sut_impl.issue, lambda: None)
    qsl = lg.ConstructQSL(1024, 1024, lambda samples: None, lambda samples: None)
    with tempfile.TemporaryDirectory() as out:
        log = lg.LogSettings()
        log.log_output.outdir = out
        log.log_output.copy_summary_to_stdout = False
        log.enable_trace = False
        try:
            lg.StartTestWithLogSettings(sut, qsl, _settings(rate, duration_s, seed, bound_ms), log)
        finally:
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut)
            sut_impl.close()
        summary = (Path(out) / "mlperf_log_summary.txt").read_text(encoding="utf-8")
    row = {
        name: int(re.search(pattern, summary).group(1)) / 1e6  # type: ignore[union-attr]
        for name, pattern in SUMMARY_FIELDS.items()
    }
    completed = re.search(r"Completed samples per second\s*:\s*([\d.]+)", summary)
    row["rps"] = float(completed.group(1)) if completed else float("nan")
    row["valid"] = 1.0 if re.search(r"Result is\s*:\s*VALID", summary) else 0.0
    row["requests"] = len(sut_impl.issued)
    row["duration_s"] = sut_impl.issued[-1] - sut_impl.issued[0]
    return row, issue_intervals_us(sut_impl.issued)


def issue_intervals_us(issued: list[float]) -> list[int]:
    """LoadGen's realised schedule as gaps (the first send right away), for our client to replay."""
    gaps = [max(1, round((b - a) * 1e6)) for a, b in itertools.pairwise(issued)]
    return [1, *gaps]
