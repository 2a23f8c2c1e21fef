"""Statistics the load generator rests on: early stopping, stability, histogram merges."""

from __future__ import annotations

import asyncio
from time import perf_counter

import numpy as np
import pytest
from pydantic import ValidationError

from deploybench.config import LoadConfig
from deploybench.load import (
    WindowSummary,
    decode_histogram,
    early_stopping_estimate_ms,
    early_stopping_passes,
    encode_histogram,
    is_stable,
    merge_histograms,
    required_requests,
    slo_verdict,
    stability,
    stats_from_histogram,
)
from deploybench.load.intervals import Block, batches_of, point_intervals
from deploybench.load.shapes import Recorder, _timed_send, arrival_offsets, parse_server_timing
from deploybench.load.stats import new_histogram
from deploybench.load.sweeps import plateau_reached
from deploybench.load.targets import TargetClient


@pytest.mark.parametrize(("overshoots", "needed"), [(0, 459), (1, 662), (2, 838), (3, 1001)])
def test_early_stopping_table_matches_loadgen(overshoots: int, needed: int) -> None:
    # MLPerf LoadGen's table for p99 at 99% confidence: 459 requests with none over, 662 with one.
    assert required_requests(overshoots) == needed
    assert early_stopping_passes(needed, overshoots)
    assert not early_stopping_passes(needed - 1, overshoots)


def test_early_stopping_other_percentile_and_large_counts() -> None:
    assert required_requests(0, percentile=90.0) == 44  # 0.9**44 <= 0.01 < 0.9**43
    big = required_requests(5000)
    assert 5000 / big < 0.01  # the observed overshoot rate must sit below 1% to claim p99
    assert early_stopping_passes(big, 5000) and not early_stopping_passes(big - 50, 5000)


def test_slo_verdict_counts_errors_as_overshoots() -> None:
    hist = new_histogram()
    for _ in range(700):
        hist.record_value(10_000)  # 10 ms
    assert slo_verdict(hist, errors=0, bound_ms=20).met
    verdict = slo_verdict(hist, errors=10, bound_ms=20)
    assert verdict.overshoots == 10 and not verdict.met
    hist.record_value(50_000)
    assert slo_verdict(hist, errors=0, bound_ms=20).overshoots == 1


def _windows(
    throughputs: list[float], p99s: list[float], requests: int = 2000, p50s: list[float] | None = None
) -> list[WindowSummary]:
    p50s = p50s or [1.0] * len(throughputs)
    return [
        WindowSummary(duration_s=1.0, ok=requests, errors=0, throughput_rps=t, p50_ms=m, p99_ms=p)
        for t, p, m in zip(throughputs, p99s, p50s, strict=True)
    ]


def test_stability_is_perf_analyzers_max_over_min_rule() -> None:
    assert is_stable(_windows([100, 102, 98], [10, 10.5, 9.8]))
    assert is_stable(_windows([50, 100, 101, 99], [30, 10, 10, 10]))  # only the last 3 count
    assert not is_stable(_windows([100, 100], [10, 10]))  # needs 3 windows
    assert not is_stable(_windows([100, 125, 100], [10, 10, 10]))  # throughput disagrees
    assert not is_stable(_windows([100, 100, 100], [10, 10, 13]))  # p99 disagrees
    assert is_stable(_windows([100, 100, 100], [10, 10, 13]), tolerance=0.35)
    # every value within 10% of the mean (100), yet the max is 1.2x the min: perf_analyzer says unstable
    assert not is_stable(_windows([100, 109, 91], [10, 10, 10]))
    assert not is_stable(_windows([100, 100, 100], [10, 10.9, 9.1]))


def test_windows_without_completions_are_never_stable() -> None:
    assert not is_stable(_windows([0, 0, 0], [0, 0, 0]))
    assert not is_stable(_windows([100, 0, 100], [10, 0, 10]))
    verdict = stability(_windows([0, 0, 0], [0, 0, 0]))
    assert not verdict.stable and "no completed request" in verdict.reason


def test_p99_stability_only_on_windows_with_enough_requests_for_a_p99() -> None:
    # 60 requests per window: the p99 is just the slowest reply or so and jumps between identical
    # windows; the latency test falls back to the p50
    few = _windows([100, 100, 100], [10, 20, 10], requests=60, p50s=[5.0, 5.1, 4.9])
    assert is_stable(few)
    assert "p50" in stability(few).reason
    shaky_median = _windows([100, 100, 100], [10, 10, 10], requests=60, p50s=[5.0, 7.0, 5.0])
    assert not is_stable(shaky_median)
    assert not is_stable(_windows([100, 100, 100], [10, 20, 10], requests=5000))
    assert "p99" in stability(_windows([100, 100, 100], [10, 20, 10], requests=5000)).reason


def test_instability_reason_carries_the_number() -> None:
    verdict = stability(_windows([100, 125, 100], [10, 10, 10]))
    assert not verdict.stable and "1.25" in verdict.reason and "1.10" in verdict.reason


def test_histogram_merge_adds_raw_counts_not_percentiles() -> None:
    fast, slow = new_histogram(), new_histogram()
    for _ in range(990):
        fast.record_value(1_000)
    for _ in range(10):
        slow.record_value(500_000)
    merged = decode_histogram(merge_histograms([encode_histogram(fast), encode_histogram(slow), None]))
    stats = stats_from_histogram(merged)
    assert stats.count == 1000
    assert stats.p50_ms == pytest.approx(1.0, rel=0.01)
    assert stats.p99_ms == pytest.approx(1.0, rel=0.01)  # 990th of 1000 is still fast
    assert stats.p999_ms == pytest.approx(500.0, rel=0.01)
    assert stats.max_ms == pytest.approx(500.0, rel=0.01)
    assert stats_from_histogram(encode_histogram(new_histogram())).count == 0


def test_microsecond_resolution() -> None:
    hist = new_histogram()
    hist.record_value(1_234)
    assert stats_from_histogram(hist).p50_ms == pytest.approx(1.234, abs=0.002)


def test_server_timing_parsing() -> None:
    header = 'queue;dur=1.2, decode;desc="jpeg";dur=0.5, cache, infer;dur=bad, total;dur=7'
    assert parse_server_timing(header) == [("queue", 1.2), ("decode", 0.5), ("total", 7.0)]


def test_arrivals_constant_and_seeded_poisson() -> None:
    constant = arrival_offsets(100.0, "constant", 0)
    assert [round(next(constant), 6) for _ in range(3)] == [0.0, 0.01, 0.02]
    first = [next(offsets) for offsets in [arrival_offsets(50.0, "poisson", 7)] for _ in range(2000)]
    again = [next(offsets) for offsets in [arrival_offsets(50.0, "poisson", 7)] for _ in range(2000)]
    assert first == again
    assert first[-1] / len(first) == pytest.approx(1 / 50.0, rel=0.1)


def test_replayed_intervals_keep_the_trace_and_split_it_exactly() -> None:
    trace = [1000, 3000, 2000, 4000, 500]
    offsets = arrival_offsets(1.0, "intervals", 0, intervals_us=trace)
    replay = [round(next(offsets), 6) for _ in range(7)]
    assert replay == [0.001, 0.004, 0.006, 0.01, 0.0105, 0.0115, 0.0145]  # in order, then repeated
    shares = [arrival_offsets(1.0, "intervals", 0, intervals_us=trace, share=(i, 3)) for i in range(3)]
    merged = sorted(round(next(share), 6) for share in shares for _ in range(4))
    assert merged[:10] == [*replay, 0.0165, 0.0205, 0.021]  # together: exactly the trace


def test_interval_trace_sets_the_rate_and_refuses_a_contradiction() -> None:
    cfg = LoadConfig(arrival="intervals", request_intervals_us=[10_000, 30_000])
    assert cfg.rate == pytest.approx(50.0)
    with pytest.raises(ValidationError, match="mean rate"):
        LoadConfig(arrival="intervals", request_intervals_us=[10_000], rate=20.0)
    with pytest.raises(ValidationError, match="go together"):
        LoadConfig(rate=5.0, request_intervals_us=[10_000])
    with pytest.raises(ValidationError, match="rate sweep"):
        LoadConfig(arrival="intervals", request_intervals_us=[10_000], sweep="rate")


def test_plateau_rule() -> None:
    assert not plateau_reached([10, 20, 40])
    assert not plateau_reached([10, 20, 40, 60])
    assert plateau_reached([10, 20, 40, 41, 40, 41])
    assert plateau_reached([100, 101, 102, 103])


def test_client_bound_rules_use_the_load_actually_delivered() -> None:
    from deploybench.load.health import ClientEvidence, judge_client

    calm = ClientEvidence(open_loop=True, latency_p50_ms=20.0, lateness_p99_ms=0.9, busiest_worker_pct=12.0)
    assert judge_client(calm) == []
    late = judge_client(ClientEvidence(open_loop=True, latency_p50_ms=100.0, lateness_p99_ms=12.0))
    assert len(late) == 1 and "12.0 ms" in late[0] and "5.0 ms" in late[0]  # 5% of the 100 ms p50
    # the bound never drops below the event loop's timer granularity
    assert judge_client(ClientEvidence(open_loop=True, latency_p50_ms=1.0, lateness_p99_ms=1.5)) == []
    busy = judge_client(ClientEvidence(open_loop=False, latency_p50_ms=5.0, busiest_worker_pct=85.0))
    assert len(busy) == 1 and "85%" in busy[0] and "--processes" in busy[0]
    slow_turn = judge_client(ClientEvidence(open_loop=False, latency_p50_ms=10.0, send_gap_p99_ms=2.0))
    assert len(slow_turn) == 1 and "2.00 ms" in slow_turn[0]
    assert judge_client(ClientEvidence(open_loop=False, latency_p50_ms=10.0, send_gap_p99_ms=0.05)) == []
    dropped = judge_client(ClientEvidence(open_loop=True, latency_p50_ms=10.0, backlog_drops=3))
    assert len(dropped) == 1 and "3 " in dropped[0]


def test_loadgen_conservative_percentile_estimate() -> None:
    # LoadGen (early_stopping.cc + results.cc): with n requests, t is the largest overshoot count
    # that still passes; the estimate is the t-th slowest latency. p99 at 99%: 662 requests for t=1.
    hist = new_histogram()
    for ms in range(1, 1001):
        hist.record_value(ms * 1000)
    assert required_requests(2) <= 1000 < required_requests(3)
    assert early_stopping_estimate_ms(hist, errors=0) == pytest.approx(999.0, rel=0.002)  # 2nd slowest
    small = new_histogram()
    for ms in range(1, 662):
        small.record_value(ms * 1000)
    assert early_stopping_estimate_ms(small, errors=0) is None  # 661 < 662: no estimate
    small.record_value(662_000)
    assert early_stopping_estimate_ms(small, errors=0) == pytest.approx(662.0, rel=0.002)  # the max
    # 1003 requests allow t=3; the 3 slowest never answered: the estimate lies above every reply
    assert early_stopping_estimate_ms(hist, errors=3) is None


def test_verdict_says_met_missed_or_undecided() -> None:
    hist = new_histogram()
    for _ in range(459):
        hist.record_value(10_000)
    assert slo_verdict(hist, errors=0, bound_ms=20).status == "met"
    few = new_histogram()
    for _ in range(100):
        few.record_value(10_000)
    verdict = slo_verdict(few, errors=0, bound_ms=20)
    assert verdict.status == "undecided" and not verdict.met and verdict.required_requests == 459
    for _ in range(10):
        few.record_value(50_000)  # 10 of 110 over the bound: the p99 is surely above it
    assert slo_verdict(few, errors=0, bound_ms=20).status == "missed"


def _blocks(rng: np.random.Generator, slices: int, rate: float, scale_us: float = 10_000) -> list[Block]:
    """0.25 s slices of `rate` replies/s with exponential latencies (mean `scale_us`)."""
    blocks = []
    for _ in range(slices):
        hist = new_histogram()
        ok = int(rng.poisson(rate * 0.25))
        for value in rng.exponential(scale_us, size=ok):
            hist.record_value(max(1, int(value)))
        blocks.append(Block.from_histogram(0.25, ok, hist))
    return blocks


def test_intervals_come_from_batches_of_seconds_not_from_slices() -> None:
    blocks = _blocks(np.random.default_rng(1), slices=60, rate=400.0)  # 15 s, 6,000 requests
    throughput, p99 = point_intervals(blocks)
    estimate = sum(b.ok for b in blocks) / (0.25 * len(blocks))
    assert throughput is not None and throughput.low < estimate < throughput.high
    assert 0.005 < (throughput.high - throughput.low) / estimate < 0.2
    assert p99 is not None and p99.low < 46.0 < p99.high  # exponential(10 ms): p99 = 46 ms
    assert "batch means over 7 batches of ~2.1 s" in throughput.method and throughput.confidence == 0.95
    assert "moving-block bootstrap, blocks of ~2.0 s" in p99.method
    assert point_intervals(blocks[:2]) == (None, None)  # two slices cannot show their own noise
    assert [len(batch) for batch in batches_of(blocks[:6])] == [2, 2, 2]  # short: three equal runs


def test_a_p99_interval_needs_enough_requests_to_reach_past_it() -> None:
    """About 460 independent requests: fewer cannot bound a p99 at 95%, and a bootstrap of them
    cannot reach above the slowest one; then there is none."""
    few = _blocks(np.random.default_rng(2), slices=24, rate=50.0)  # ~300 requests
    throughput, p99 = point_intervals(few)
    assert throughput is not None and p99 is None
    many = _blocks(np.random.default_rng(2), slices=24, rate=200.0)  # ~1,200
    assert point_intervals(many)[1] is not None


def _with_slow(rng: np.random.Generator, oks: list[int], slow: list[int]) -> list[Block]:
    """Slices whose `slow` replies take 60-120 ms, the rest exponential around 10 ms."""
    blocks = []
    for ok, count in zip(oks, slow, strict=True):
        hist = new_histogram()
        for value in rng.exponential(10_000, size=ok - count):
            hist.record_value(max(1, int(value)))
        for value in rng.uniform(60_000, 120_000, size=count):
            hist.record_value(int(value))
        blocks.append(Block.from_histogram(0.25, ok, hist))
    return blocks


def test_correlated_batches_widen_the_p99_interval() -> None:
    """Slow replies in bursts (a host hiccup every other 2 s) are fewer independent facts than as
    many scattered ones: the same counts, clustered, give a wider p99 interval."""
    rng = np.random.default_rng(3)
    oks = [100] * 80  # 20 s at 400 req/s
    even = _with_slow(rng, oks, [2] * 80)
    clustered = _with_slow(rng, oks, [4 if (i // 8) % 2 else 0 for i in range(80)])
    narrow, wide = point_intervals(even)[1], point_intervals(clustered)[1]
    assert narrow is not None and "over 8,000 requests" in narrow.method
    assert wide is None or wide.high - wide.low > 1.5 * (narrow.high - narrow.low)


class _ReplyAfter(TargetClient):
    """A client whose reply comes `delay_s` after the send (no network)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    async def send(self, payload: bytes) -> tuple[None, float, int, None]:
        await asyncio.sleep(self.delay_s)
        return None, perf_counter(), 0, None

    async def close(self) -> None:
        return None


def test_an_open_loop_send_fired_early_is_timed_from_its_real_send() -> None:
    # a timer may fire the send up to EARLY_FIRE_S before its schedule: timing it from the schedule
    # would take that head start off the latency (a 10 ms reply would read as ~9.5 ms)
    rec = Recorder()

    async def one_early_send() -> None:
        scheduled = perf_counter() + 0.05  # sent 50 ms ahead of its schedule
        await _timed_send(_ReplyAfter(0.06), b"x", scheduled, rec)

    asyncio.run(one_early_send())
    assert rec.latencies_us[0] >= 59_000  # the reply took 60 ms from the send, not 10 ms
