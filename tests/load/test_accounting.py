"""Every request counted, from its scheduled time, and a broken measurement never passed off as a result."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest
from helpers.load_support import quick_cfg

from deploybench.load import HttpTarget, run_load
from deploybench.results import LoadPoint

pytestmark = pytest.mark.slow


def _load_worker_pids() -> list[int]:
    """The forked load-worker processes of the point now running (the test server is not one)."""
    return [child.pid for child in multiprocessing.active_children() if child.pid]


def _freeze_load_worker(after_s: float, for_s: float) -> threading.Thread:
    """Stop the load workers for `for_s`, `after_s` after they started (a fork server may take a
    moment to start them the first time)."""

    def freeze() -> None:
        deadline = time.monotonic() + 30.0
        while not _load_worker_pids() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(after_s)
        pids = _load_worker_pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(for_s)
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

    thread = threading.Thread(target=freeze, daemon=True)
    thread.start()
    return thread


def test_a_frozen_client_shows_in_the_open_loop_latency(server_url: str, payloads: list[bytes]) -> None:
    # The load worker is stopped for 1 s; ~100 sends fall due meanwhile and go out late. Timed from
    # their schedule they waited up to a second: the p99 must say so, and the point is client-bound.
    freezer = _freeze_load_worker(after_s=1.0, for_s=1.0)
    cfg = quick_cfg(
        rate=100.0,
        warmup_requests=0,
        warmup_s=0.0,
        window_s=1.0,
        max_windows=5,
        duration_s=5.0,
        stability_tolerance=1e-6,
    )
    point = run_load(HttpTarget(f"{server_url}/sleep/5", payloads), cfg).points[0]
    freezer.join()
    assert point.latency.p99_ms >= 500, point.latency
    lateness = point.client.send_lateness
    assert lateness is not None and lateness.max_ms >= 800
    assert point.client_bound and any("late" in flag for flag in point.flags), point.flags


def _one_second_at_20_per_s(url: str, payloads: list[bytes], timeout_s: float) -> LoadPoint:
    """An open-loop point that measures for 1 s: ~20 requests, all still in flight at its end here."""
    cfg = quick_cfg(
        rate=20.0,
        warmup_requests=0,
        warmup_s=0.0,
        window_s=0.5,
        min_window_requests=5,
        max_windows=2,
        duration_s=1.0,
        request_timeout_s=timeout_s,
    )
    return run_load(HttpTarget(url, payloads), cfg).points[0]


def test_requests_in_flight_at_the_end_are_waited_for(server_url: str, payloads: list[bytes]) -> None:
    # Each reply takes 1.5 s and the point measures for 1 s: every request is still in flight when
    # measuring stops. They must be waited for (up to the timeout), not dropped.
    point = _one_second_at_20_per_s(f"{server_url}/sleep/1500", payloads, timeout_s=5.0)
    counts = point.accounting
    assert counts.issued == counts.completed + counts.errors + counts.timed_out
    assert counts.issued >= 12 and counts.completed == counts.issued
    assert point.ok == point.latency.count >= 12 and point.latency.p50_ms >= 1400
    assert point.tail_ok == point.ok  # all of them came after measuring stopped


def test_requests_still_unanswered_at_the_timeout_count_as_timed_out(
    server_url: str, payloads: list[bytes]
) -> None:
    point = _one_second_at_20_per_s(f"{server_url}/sleep/3000", payloads, timeout_s=0.8)
    counts = point.accounting
    assert counts.issued >= 12 and counts.timed_out == counts.issued and counts.completed == 0
    assert point.errors.get("timeout") == counts.timed_out


def test_an_overloaded_server_cannot_hide_its_slowest_replies(server_url: str, payloads: list[bytes]) -> None:
    # /serial/20 serves 50 req/s; at 100 req/s the queue grows by 50 a second, and the replies still
    # queued when the point ends are its slowest. They belong in its latency figures.
    cfg = quick_cfg(
        rate=100.0,
        warmup_requests=0,
        warmup_s=0.0,
        window_s=1.0,
        max_windows=2,
        duration_s=2.0,
        request_timeout_s=10.0,
    )
    point = run_load(HttpTarget(f"{server_url}/serial/20", payloads), cfg).points[0]
    counts = point.accounting
    assert counts.issued == counts.completed + counts.errors + counts.timed_out
    assert counts.issued >= 150 and point.tail_ok >= 50
    assert point.latency.max_ms >= 1500 and point.latency.p99_ms >= 1500


def test_a_redirect_is_an_error_not_followed(server_url: str, payloads: list[bytes]) -> None:
    cfg = quick_cfg(concurrency=1, warmup_requests=0, warmup_s=0.0, duration_s=1.5)
    point = run_load(HttpTarget(f"{server_url}/redirect", payloads), cfg).points[0]
    assert point.ok == 0 and set(point.errors) == {"http_307"}


def test_a_dead_load_worker_invalidates_its_point_at_once(server_url: str, payloads: list[bytes]) -> None:
    def kill_one_worker() -> None:
        pids = _load_worker_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)

    threading.Timer(1.5, kill_one_worker).start()
    started = time.monotonic()
    cfg = quick_cfg(concurrency=4, processes=2, duration_s=30.0, max_windows=200, stability_tolerance=1e-6)
    report = run_load(HttpTarget(f"{server_url}/sleep/5", payloads), cfg)
    assert time.monotonic() - started < 8  # not the 30 s bound, nor the hard stop after it
    point = report.points[0]
    assert point.invalid_reason is not None and "died" in point.invalid_reason
    assert not point.trusted and any(flag.startswith("invalid") for flag in point.flags)
    assert report.peak_index is None
    assert "died" in report.details[0].stop_reason


def test_an_slo_point_runs_until_its_verdict_is_reachable(server_url: str, payloads: list[bytes]) -> None:
    # 4 users x 20 ms = 200 req/s; 0.5 s windows of 20 requests would be "stable" after ~300 requests,
    # too few for any p99 claim at 99% confidence (459 with none over the bound).
    cfg = quick_cfg(concurrency=4, slo_p99_ms=1000.0, duration_s=20.0)
    point = run_load(HttpTarget(f"{server_url}/sleep/20", payloads), cfg).points[0]
    assert point.slo is not None and point.slo.requests >= 459
    assert point.slo.status == "met" and point.slo.met
