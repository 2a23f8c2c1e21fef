"""One LoadPoint from its spans: figures, intervals, the client's own load, and every flag with its number.

Scopes: the measured windows give the rate (and its interval); the windows plus the tail (replies
that came after measuring stopped) give the latency figures, the SLO verdict and LoadGen's estimate;
everything the point saw, warm-up included, gives the request accounting. The intervals carry this
machine's between-run term where it has a record (deploybench.load.noise).
"""

from __future__ import annotations

import os

import numpy as np

from deploybench.config import LoadConfig
from deploybench.load.early_stopping import early_stopping_estimate_ms, slo_verdict
from deploybench.load.health import ClientEvidence, judge_client
from deploybench.load.intervals import Block, point_intervals
from deploybench.load.noise import noise_or_prior
from deploybench.load.span import Span
from deploybench.load.stats import encode_histogram, histogram_from_counts, stats_from_counts
from deploybench.results import ClientLoad, LatencyStats, LoadPoint


def _blocks(measured: Span, tail: Span) -> list[Block]:
    """The windows' slices, the tail's latencies joined to the last one (their replies came late)."""
    blocks = measured.blocks()
    if blocks and tail.slices:
        last = blocks[-1]
        tail_latency = [piece.latency for piece in tail.slices]
        index = np.concatenate([last.latency[0], *[p[0] for p in tail_latency]])
        counts = np.concatenate([last.latency[1], *[p[1] for p in tail_latency]])
        blocks[-1] = Block(last.duration_s, last.ok, (index, counts))
    return blocks


def client_load(measured: Span, open_loop: bool) -> ClientLoad:
    """The load workers' own numbers over the measured windows."""
    duration, cores = measured.duration_s, os.cpu_count() or 1
    cpu = measured.cpu_s()
    total_cpu = sum(cpu.values())
    requests = measured.requests
    lateness = measured.counts("lateness") if open_loop else None
    gap = None if open_loop else measured.stats("gap")
    return ClientLoad(
        sends=measured.total("sends"),
        late_sends=measured.total("late_sends"),
        cpu_ms_per_request=round(1000 * total_cpu / requests, 4) if requests else None,
        cpu_pct_of_machine=round(100 * total_cpu / duration / cores, 2) if duration else None,
        busiest_worker_pct=round(max(100 * c / duration for c in cpu.values()), 1)
        if duration and cpu
        else None,
        cores=cores,
        send_lateness=stats_from_counts(lateness) if lateness is not None else None,
        send_lateness_histogram=encode_histogram(histogram_from_counts(lateness))
        if lateness is not None
        else None,
        send_gap=gap if gap is not None and gap.count else None,
    )


def _client_flags(client: ClientLoad, latency: LatencyStats, open_loop: bool, drops: int) -> list[str]:
    gap = client.send_gap
    return judge_client(
        ClientEvidence(
            open_loop=open_loop,
            latency_p50_ms=latency.p50_ms,
            lateness_p99_ms=client.send_lateness.p99_ms
            if client.send_lateness and client.send_lateness.count
            else None,
            send_gap_mean_ms=gap.mean_ms if gap else None,
            send_gap_p99_ms=gap.p99_ms if gap else None,
            busiest_worker_pct=client.busiest_worker_pct,
            backlog_drops=drops,
        )
    )


def build_point(
    measured: Span,
    tail: Span,
    everything: Span,
    *,
    mode: str,
    concurrency: int | None,
    rate: float | None,
    stable: bool,
    windows: int,
    cfg: LoadConfig,
    unstable_reason: str | None,
    invalid_reason: str | None,
) -> LoadPoint:
    """Merge raw counts into the point; flag it (invalid, unstable, client-bound) with the numbers."""
    figures = Span.of([measured, tail])
    counts, errors = figures.latency_counts, figures.errors
    error_count = sum(errors.values())
    latency = stats_from_counts(counts)
    duration = measured.duration_s
    open_loop = mode == "open"
    client = client_load(measured, open_loop)
    client_flags = (
        [] if mode == "inprocess" else _client_flags(client, latency, open_loop, figures.backlog_drops)
    )
    flags = [f"invalid: {invalid_reason}"] if invalid_reason else []
    flags += [] if stable else [f"unstable: {unstable_reason}"]
    throughput_ci, p99_ci = point_intervals(_blocks(measured, tail), noise=noise_or_prior())
    sends = client.sends
    return LoadPoint(
        mode=mode,
        concurrency=concurrency,
        target_rate=rate,
        arrival=cfg.arrival if open_loop else None,
        duration_s=round(duration, 4),
        ok=figures.ok,
        errors=errors,
        throughput_rps=measured.ok / duration if duration > 0 else 0.0,
        latency=latency,
        stable=stable,
        windows=windows,
        client_bound=bool(client_flags),
        client_cpu_pct=client.busiest_worker_pct,
        late_send_fraction=client.late_sends / sends if open_loop and sends else None,
        bytes_sent=figures.total("bytes_sent"),
        bytes_received=figures.total("bytes_received"),
        server_timing_ms=figures.timing_means(),
        histogram=encode_histogram(histogram_from_counts(counts)),
        slo=slo_verdict(counts, error_count, cfg.slo_p99_ms) if cfg.slo_p99_ms else None,
        tail_ok=tail.ok,
        accounting=everything.accounting(),
        client=client,
        throughput_ci=throughput_ci,
        p99_ci=p99_ci,
        p99_estimate_ms=early_stopping_estimate_ms(counts, error_count),
        invalid_reason=invalid_reason,
        flags=flags + client_flags,
    )
