"""The load generator against a real server on loopback (see loopback_server.py)."""

from __future__ import annotations

import threading
import time

import pytest

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

from .conftest import free_port, quick_cfg

pytestmark = pytest.mark.slow


def test_closed_loop_p50_matches_known_service_time(server_url: str, payloads: list[bytes]) -> None:
    report = run_load(HttpTarget(f"{server_url}/sleep/20", payloads), quick_cfg(concurrency=4))
    point = report.points[0]
    assert point.mode == "closed" and point.concurrency == 4
    assert 19.0 <= point.latency.p50_ms <= 40.0
    assert point.errors == {}
    assert point.ok == point.latency.count > 0
    assert point.throughput_rps == pytest.approx(point.ok / point.duration_s, rel=1e-3)
    assert point.bytes_sent >= point.ok * 20_000
    assert point.server_timing_ms == {"queue": pytest.approx(0.5), "infer": pytest.approx(20.0)}
    assert decode_histogram(point.histogram or "").get_total_count() == point.ok
    detail = report.details[0]
    assert detail.warmup_requests >= 5 and detail.windows
    assert point.windows == (3 if point.stable else len(detail.windows))


def test_open_loop_delivers_the_requested_rate(server_url: str, payloads: list[bytes]) -> None:
    cfg = quick_cfg(rate=100.0, arrival="poisson", seed=3, window_s=1.0, max_windows=3, duration_s=4.0)
    point = run_load(HttpTarget(f"{server_url}/echo", payloads), cfg).points[0]
    assert point.mode == "open" and point.target_rate == 100.0
    assert 70.0 <= point.throughput_rps <= 130.0
    assert point.late_send_fraction is not None


def test_open_loop_shows_a_stall_that_closed_loop_hides(server_url: str, payloads: list[bytes]) -> None:
    # The server blocks for 1 s once. Open loop keeps its schedule, so every request due during the
    # stall waits (latency from the scheduled time); closed loop just stops sending for 1 s.
    cfg = quick_cfg(warmup_requests=0, warmup_s=0.0, window_s=1.0, max_windows=4, duration_s=4.5)
    opened = run_load(HttpTarget(f"{server_url}/stall/open/150", payloads),
                      cfg.model_copy(update={"rate": 100.0}))
    closed = run_load(HttpTarget(f"{server_url}/stall/closed/250", payloads),
                      cfg.model_copy(update={"concurrency": 1}))
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
    cfg = quick_cfg(concurrency=2, request_timeout_s=0.2, warmup_requests=0, warmup_s=0.0,
                    min_window_requests=1, max_windows=1, window_s=0.5, duration_s=2.0)
    point = run_load(HttpTarget(f"{server_url}/sleep/2000", payloads), cfg).points[0]
    assert point.errors.get("timeout", 0) >= 2 and point.ok == 0


def test_two_processes_merge_raw_histograms(server_url: str, payloads: list[bytes]) -> None:
    report = run_load(HttpTarget(f"{server_url}/sleep/10", payloads), quick_cfg(concurrency=4, processes=2))
    point = report.points[0]
    assert report.details[0].processes == 2
    assert decode_histogram(point.histogram or "").get_total_count() == point.ok == point.latency.count
    assert 9.0 <= point.latency.p50_ms <= 30.0
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
    report = sweep_concurrency(HttpTarget(f"{server_url}/sleep/20", payloads), cfg, levels=[1, 4],
                               extra_levels=[2])
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
    # capacity 50 req/s; with p99 <= 150 ms the answer lies below it
    cfg = quick_cfg(sweep="rate", rate=20.0, slo_p99_ms=150.0, window_s=0.5, max_windows=3, duration_s=2.5,
                    min_window_requests=10)
    report = run_load(HttpTarget(f"{server_url}/serial/20", payloads), cfg)
    assert report.slo_rate_index is not None
    best = report.points[report.slo_rate_index]
    # about the capacity at most (2 s points cannot see a few % overload); far below on a busy machine
    assert 5.0 <= (best.target_rate or 0) <= 60.0
    assert best.latency.p99_ms <= 150
    best_rate = best.target_rate or 0
    assert any((p.target_rate or 0) > best_rate and p.latency.p99_ms > 150 for p in report.points)
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


def test_a_killed_worker_process_does_not_hang_the_point(server_url: str, payloads: list[bytes]) -> None:
    import multiprocessing
    import os
    import signal

    def kill_one_worker() -> None:
        children = multiprocessing.active_children()
        if children:
            os.kill(children[0].pid or 0, signal.SIGKILL)

    threading.Timer(2.0, kill_one_worker).start()
    started = time.monotonic()
    cfg = quick_cfg(concurrency=4, processes=2, duration_s=5.0, max_windows=100, stability_tolerance=1e-6)
    report = run_load(HttpTarget(f"{server_url}/sleep/5", payloads), cfg)
    assert time.monotonic() - started < 12
    assert report.points[0].ok > 0
    assert any("died" in note for note in report.notes)
