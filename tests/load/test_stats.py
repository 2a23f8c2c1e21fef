"""Statistics the load generator rests on: early stopping, stability, histogram merges."""

from __future__ import annotations

import pytest

from deploybench.load import (
    decode_histogram,
    early_stopping_passes,
    encode_histogram,
    is_stable,
    merge_histograms,
    required_requests,
    slo_verdict,
    stats_from_histogram,
)
from deploybench.load.shapes import arrival_offsets, parse_server_timing
from deploybench.load.stats import new_histogram
from deploybench.load.sweeps import plateau_reached


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


def test_stability_rule_on_synthetic_windows() -> None:
    assert is_stable([100, 102, 98], [10, 10.5, 9.8])
    assert is_stable([50, 100, 101, 99], [30, 10, 10, 10])  # only the last 3 count
    assert not is_stable([100, 100], [10, 10])  # needs 3 windows
    assert not is_stable([100, 125, 100], [10, 10, 10])  # throughput disagrees
    assert not is_stable([100, 100, 100], [10, 10, 13])  # p99 disagrees
    assert is_stable([0, 0, 0], [0, 0, 0])
    assert not is_stable([100, 100, 100], [10, 10, 13], tolerance=0.10)
    assert is_stable([100, 100, 100], [10, 10, 13], tolerance=0.20)


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


def test_plateau_rule() -> None:
    assert not plateau_reached([10, 20, 40])
    assert not plateau_reached([10, 20, 40, 60])
    assert plateau_reached([10, 20, 40, 41, 40, 41])
    assert plateau_reached([100, 101, 102, 103])


def test_client_bound_rules() -> None:
    from deploybench.load.health import judge_client
    from deploybench.load.meter import Span, _closed_loop_lateness

    assert not judge_client(50.0, 0.005, open_loop=True).client_bound
    busy = judge_client(85.0, 0.0, open_loop=False)
    assert busy.client_bound and "85% busy" in busy.reasons[0]
    late = judge_client(10.0, 0.02, open_loop=True)
    assert late.client_bound and "sends started more than 1 ms late" in late.reasons[0]
    span = Span(lag_samples=100, lag_late=[30, 20, 10, 5, 0, 0, 0])
    assert _closed_loop_lateness(span, p50_ms=0.8) == (0.30, 1.0)  # fast requests: 1 ms matters
    assert _closed_loop_lateness(span, p50_ms=1600.0) == (0.05, 10.0)  # 1% of 1.6 s -> 10 ms bucket
    assert _closed_loop_lateness(Span(), p50_ms=5.0) == (None, 1.0)
