"""The load generator against a real server on loopback (see helpers/loopback_server.py)."""

from __future__ import annotations

import threading
import time

import pytest
from helpers.load_support import free_port, quick_cfg

from deploybench.load import (
    HttpTarget,
    InProcessTarget,
    LoadError,
    TargetUnreachable,
    decode_histogram,
    run_load,
    run_points,
    sweep_concurrency,
)
from deploybench.load.stats import count_above

pytestmark = pytest.mark.slow


def test_closed_loop_p50_matches_known_service_time(server_url: str, payloads: list[bytes]) -> None:
    report = run_load(HttpTarget(f"{server_url}/sleep/20", payloads), quick_cfg(concurrency=4))
    point = report.points[0]
    assert point.mode == "closed" and point.concurrency == 4
    assert 19.0 <= point.latency.p50_ms <= 40.0
    assert point.errors == {}
    assert point.ok == point.latency.count > 0
    # replies that came after measuring stopped are in the latency figures, not in the rate
    assert point.throughput_rps == pytest.approx((point.ok - point.tail_ok) / point.duration_s, rel=1e-3)
    counts = point.accounting
    assert counts.issued == counts.completed + counts.errors + counts.timed_out >= point.ok
    assert point.bytes_sent >= point.ok * 20_000
    assert point.server_timing_ms == {"queue": pytest.approx(0.5), "infer": pytest.approx(20.0)}
    assert decode_histogram(point.histogram or "").get_total_count() == point.ok
    detail = report.details[0]
    assert detail.warmup_requests >= 5 and detail.windows
    assert point.windows == (3 if point.stable else len(detail.windows))
    assert point.throughput_ci.low <= point.throughput_rps <= point.throughput_ci.high
    if point.p99_ci is not None:  # none from too few requests (tests/load/test_stats.py)
        assert point.p99_ci.low <= point.latency.p99_ms <= point.p99_ci.high
    else:
        assert point.ok < 2_000
    client = point.client
    assert client.cpu_ms_per_request > 0 and 0 < client.cpu_pct_of_machine < 100
    assert client.controller_cpu_pct is not None and 0 <= client.controller_cpu_pct <= 100
    assert client.send_gap is not None and client.send_gap.count > 0  # closed loop: reply -> next send


def test_open_loop_delivers_the_requested_rate(server_url: str, payloads: list[bytes]) -> None:
    cfg = quick_cfg(rate=100.0, arrival="poisson", seed=3, window_s=1.0, max_windows=3, duration_s=4.0)
    point = run_load(HttpTarget(f"{server_url}/echo", payloads), cfg).points[0]
    assert point.mode == "open" and point.target_rate == 100.0
    assert 70.0 <= point.throughput_rps <= 130.0
    # every send's lateness is recorded: the distribution counts exactly the sends of the windows,
    # and those sends, counted on their own, went out at the asked rate
    lateness = point.client.send_lateness
    assert lateness is not None and lateness.count == point.client.sends
    assert 70.0 <= point.client.sends / point.duration_s <= 130.0
    assert point.late_send_fraction == pytest.approx(point.client.late_sends / point.client.sends)


def test_open_loop_replays_a_trace_of_intervals_over_two_processes(
    server_url: str, payloads: list[bytes]
) -> None:
    # perf_analyzer's --request-intervals: gaps of 5 ms and 15 ms in turn are 100 req/s on average
    cfg = quick_cfg(
        arrival="intervals",
        request_intervals_us=[5000, 15000],
        window_s=1.0,
        max_windows=3,
        duration_s=4.0,
        processes=2,
    )
    point = run_load(HttpTarget(f"{server_url}/echo", payloads), cfg).points[0]
    assert point.mode == "open" and point.target_rate == pytest.approx(100.0)
    assert 85.0 <= point.client.sends / point.duration_s <= 115.0
    assert point.accounting.issued == point.accounting.completed + point.accounting.errors


def test_open_loop_shows_a_stall_that_closed_loop_hides(server_url: str, payloads: list[bytes]) -> None:
    # The server blocks for 1 s once. Open loop keeps its schedule, so every request due during the
    # stall waits (latency from the scheduled time); closed loop just stops sending for 1 s.
    cfg = quick_cfg(warmup_requests=0, warmup_s=0.0, window_s=1.0, max_windows=4, duration_s=4.5)
    opened = run_load(
        HttpTarget(f"{server_url}/stall/open/150", payloads), cfg.model_copy(update={"rate": 100.0})
    )
    closed = run_load(
        HttpTarget(f"{server_url}/stall/closed/250", payloads), cfg.model_copy(update={"concurrency": 1})
    )
    open_point, closed_point = opened.points[0], closed.points[0]
    assert open_point.latency.max_ms >= 800 and closed_point.latency.max_ms >= 800  # both saw the stall
    assert open_point.latency.p99_ms >= 500
    assert closed_point.latency.p99_ms <= 200


def test_server_errors_are_counted_and_the_run_goes_on(server_url: str, payloads: list[bytes]) -> None:
    point = run_load(HttpTarget(f"{server_url}/flaky", payloads), quick_cfg(concurrency=2)).points[0]
    total = point.ok + point.error_count
    assert set(point.errors) == {"http_500"}
    assert 0.07 <= point.errors["http_500"] / total <= 0.13
    assert point.ok > 100


def test_timeouts_are_counted(server_url: str, payloads: list[bytes]) -> None:
    cfg = quick_cfg(
        concurrency=2,
        request_timeout_s=0.2,
        warmup_requests=0,
        warmup_s=0.0,
        min_window_requests=1,
        max_windows=1,
        window_s=0.5,
        duration_s=2.0,
    )
    point = run_load(HttpTarget(f"{server_url}/sleep/2000", payloads), cfg).points[0]
    assert point.errors.get("timeout", 0) >= 2 and point.ok == 0


def test_two_processes_merge_raw_histograms(server_url: str, payloads: list[bytes]) -> None:
    # One connection per process: one process sees 2 ms replies, the other 40 ms ones, so it does
    # ~15x more requests. Merging raw counts gives a fast p50 and a slow p99; averaging the two
    # processes' percentiles would put the p50 near 21 ms.
    target = HttpTarget(f"{server_url}/by-connection/2/40", payloads)
    report = run_load(target, quick_cfg(concurrency=2, processes=2))
    point = report.points[0]
    assert report.details[0].processes == 2
    assert decode_histogram(point.histogram or "").get_total_count() == point.ok == point.latency.count
    assert point.latency.p50_ms <= 10.0, point.latency
    assert point.latency.p99_ms >= 35.0, point.latency
    assert point.client_cpu_pct is not None


def test_request_budget_bounds_the_run(server_url: str, payloads: list[bytes]) -> None:
    cfg = quick_cfg(concurrency=4, max_requests=120, warmup_requests=0, warmup_s=0.0, duration_s=30.0)
    started = time.monotonic()
    report = run_load(HttpTarget(f"{server_url}/echo", payloads), cfg)
    assert time.monotonic() - started < 15
    point = report.points[0]
    assert point.ok + point.error_count <= 120
    assert report.details[0].stop_reason.startswith(("request budget used", "stable"))


def test_stop_event_ends_a_run_early_and_still_reports(server_url: str, payloads: list[bytes]) -> None:
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    started = time.monotonic()
    cfg = quick_cfg(concurrency=2, duration_s=60.0, max_windows=100, window_s=0.5)
    report = run_load(HttpTarget(f"{server_url}/sleep/5", payloads), cfg, stop_event=stop)
    assert time.monotonic() - started < 10
    assert report.stopped_early and report.points[0].ok > 0
    assert report.details[0].stop_reason == "interrupted"


def test_concurrency_levels_and_extra_level(server_url: str, payloads: list[bytes]) -> None:
    cfg = quick_cfg(max_windows=4, duration_s=3.0)
    report = sweep_concurrency(
        HttpTarget(f"{server_url}/sleep/20", payloads), cfg, levels=[1, 4], extra_levels=[2]
    )
    assert [p.concurrency for p in report.points] == [1, 2, 4]
    assert report.points[2].throughput_rps > 2 * report.points[0].throughput_rps
    assert report.index_of_concurrency(2) == 1


def test_concurrency_sweep_stops_at_the_plateau(server_url: str, payloads: list[bytes]) -> None:
    # /serial/10 serves one request at a time: 100 req/s whatever the concurrency.
    cfg = quick_cfg(sweep="concurrency", max_windows=3, duration_s=2.5, window_s=0.4)
    report = run_load(HttpTarget(f"{server_url}/serial/10", payloads), cfg)
    levels = [p.concurrency for p in report.points]
    assert levels[:2] == [1, 2] and 4 <= len(levels) <= 8  # stopped well before the cap (256)
    assert any("plateau" in note for note in report.notes)


def test_rate_sweep_finds_the_highest_rate_within_the_slo(server_url: str, payloads: list[bytes]) -> None:
    # /serial/5 serves one request at a time: at most 200 req/s. p99 <= 100 ms holds below that.
    cfg = quick_cfg(
        sweep="rate",
        rate=100.0,
        slo_p99_ms=100.0,
        window_s=0.5,
        max_windows=4,
        duration_s=8.0,
        min_window_requests=10,
    )
    report = run_load(HttpTarget(f"{server_url}/serial/5", payloads), cfg)
    assert report.slo_rate_index is not None
    best = report.points[report.slo_rate_index]
    # the claim rests on the verdict, and the verdict on the raw histogram: recount it independently
    assert best.slo is not None and best.slo.status == "met" and best.slo.requests >= 459
    over = count_above(decode_histogram(best.histogram or ""), 100_000) + best.error_count
    assert over == best.slo.overshoots
    best_rate = best.target_rate or 0
    assert best_rate <= 1.1 * 200  # never above the capacity (plus the timer's slack)
    above = [p for p in report.points if (p.target_rate or 0) > best_rate]
    assert above and all(p.slo is not None and p.slo.status != "met" for p in above)
    assert len(report.points) <= 12


def test_in_process_target() -> None:
    calls = []

    def predict(body: bytes) -> int:
        time.sleep(0.005)
        calls.append(len(body))
        return len(body)

    report = run_points(InProcessTarget(predict, [b"abc"]), quick_cfg(), concurrencies=[2])
    point = report.points[0]
    assert point.mode == "inprocess" and not point.client_bound
    assert 4.5 <= point.latency.p50_ms <= 20.0
    assert len(calls) >= point.ok > 0


def test_unreachable_url_fails_fast(payloads: list[bytes]) -> None:
    started = time.monotonic()
    with pytest.raises(TargetUnreachable, match="cannot connect"):
        url = f"http://127.0.0.1:{free_port()}/invocations"
        run_load(HttpTarget(url, payloads), quick_cfg(concurrency=1))
    assert time.monotonic() - started < 5


def test_bad_targets_are_refused_before_any_load() -> None:
    with pytest.raises(LoadError, match="payload"):
        HttpTarget("http://127.0.0.1:8080/x", [b""])
    with pytest.raises(LoadError, match="payload"):
        HttpTarget("http://127.0.0.1:8080/x", [])
    with pytest.raises(LoadError, match="url"):
        HttpTarget("ftp://nowhere", [b"x"])
    with pytest.raises(LoadError, match="processes"):
        run_points(InProcessTarget(lambda b: b, [b"x"]), quick_cfg(processes=2), concurrencies=[2])


def test_a_wrong_path_stops_after_the_warm_up(server_url: str, payloads: list[bytes]) -> None:
    started = time.monotonic()
    target = HttpTarget(f"{server_url}/no-such-route", payloads)
    report = run_load(target, quick_cfg(concurrency=2, duration_s=20.0))
    assert time.monotonic() - started < 8
    point = report.points[0]
    assert point.ok == 0 and set(point.errors) == {"http_404"}
    assert report.details[0].stop_reason.startswith("every warm-up request failed (http_404")


def test_windows_hold_enough_requests_for_the_stability_rule(server_url: str, payloads: list[bytes]) -> None:
    # With 5 requests a window, one request more or less moves its throughput by 20%: a 10% max/min
    # rule would judge the rounding, not the server. Windows hold at least 40 requests (10% / 4).
    cfg = quick_cfg(concurrency=1, min_window_requests=5, window_s=0.1, max_windows=3, duration_s=6.0)
    report = run_load(HttpTarget(f"{server_url}/sleep/5", payloads), cfg)
    windows = report.details[0].windows
    assert windows and all(w.ok + w.errors >= 40 for w in windows)
