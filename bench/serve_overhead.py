"""Served vs in-process throughput of the same variant, side by side in one run (not a test).

For each backend and served configuration (batch 1 at low and high concurrency, dynamic batching
at high concurrency): rounds of in-process img/s (decode + preprocess + predict, batch 1, T
threads) immediately followed by the same variant behind `deploybench serve` under closed-loop
load of the default JPEG; each ratio compares neighbours in time, so drift from other processes on
the machine hurts less. Because other processes share the 2 cores, it also prints CPU ms per image:
the server's processes (front + workers, not the load client) per answered request vs the
in-process loop's, whose ratio does not depend on how much CPU others took. Also prints serial vs
overlapped (thread) preprocessing in-process.

    .venv/bin/python bench/serve_overhead.py --backends openvino-int8,eager --duration 15

The load client runs on the same 2 cores as the server: the served figure pays for it too.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from deploybench.config import LoadConfig, ModelSpec
from deploybench.load import HttpTarget, run_load
from deploybench.payload import default_payload_path, preprocess
from deploybench.results import Candidate
from deploybench.study.launcher import ServerProcess, stop_server
from deploybench.study.launcher import start_server as launch_server

FALLBACK_BACKEND = "onnxruntime"
# (label, workers, threads, max_batch_size, max_delay_ms, concurrency); threads=None: use --threads
SERVED_CONFIGS = [
    ("b1 c4", 1, None, 1, 0.0, 4),
    ("b1 c16", 1, None, 1, 0.0, 16),
    ("b8 c16", 1, None, 8, 5.0, 16),
    ("2w1t b1 c16", 2, 1, 1, 0.0, 16),  # two workers x 1 thread: one decodes while the other infers
]


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU seconds of these processes and their children (all threads)."""
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for member in [proc, *proc.children(recursive=True)]:
                times = member.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def inprocess_rate(predict, body: bytes, duration_s: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(images/s, CPU ms per image) of decode + preprocess + predict(batch 1) in a tight loop."""
    for _ in range(3):
        predict(preprocess(body)[None])
    me = psutil.Process()
    cpu0 = sum(me.cpu_times()[:2])
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < duration_s and count < 100_000:
        predict(preprocess(body)[None])
        count += 1
    return count / (time.perf_counter() - start), (sum(me.cpu_times()[:2]) - cpu0) * 1000 / count


def load_rate(
    url: str, body: bytes | list[bytes], concurrency: int, duration_s: float, content_type: str = "image/jpeg"
) -> tuple[float, int, str]:
    """One closed-loop point from the project's load generator: (ok responses/s, errors, client)."""
    cfg = LoadConfig(
        concurrency=concurrency,
        duration_s=duration_s,
        warmup_s=2.0,
        window_s=duration_s / 3,
        min_window_requests=10,
        max_windows=3,
    )
    bodies = body if isinstance(body, list) else [body]
    point = run_load(HttpTarget(url, bodies, content_type=content_type), cfg).points[0]
    return point.throughput_rps, point.error_count, "deploybench.load"


def start_server(model: str, backend: str, cache_dir: Path, config: tuple, threads: int) -> ServerProcess:  # type: ignore[type-arg]
    """`deploybench serve` on a free loopback port, started and awaited exactly as a study does."""
    _, workers, cfg_threads, batch, delay, _ = config
    candidate = Candidate(
        backend=backend,
        workers=workers,
        threads=cfg_threads or threads,
        max_batch_size=batch,
        max_delay_ms=delay,
    )
    log = Path(tempfile.mkstemp(prefix="serve-overhead-", suffix=".log")[1])
    return launch_server(ModelSpec(source=model), candidate, log, cache_dir=cache_dir, timeout_s=600)


def pick_backends(requested: list[str]) -> list[str]:
    from deploybench.backends.base import available_backends

    available = set(available_backends())
    chosen = []
    for name in requested:
        if name in available:
            chosen.append(name)
            continue
        fallback = FALLBACK_BACKEND if FALLBACK_BACKEND in available else "eager"
        print(f"note: backend {name!r} is not available here; using {fallback!r} instead")
        chosen.append(fallback)
    return list(dict.fromkeys(chosen))


def overlapped_rate(predict, body: bytes, duration_s: float) -> float:  # type: ignore[no-untyped-def]
    """Images/s when the next image is decoded + preprocessed in a thread while predict runs
    (what a front-process thread pool would buy): compared with the serial loop above."""
    with ThreadPoolExecutor(1) as pool:
        ahead = pool.submit(preprocess, body)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < duration_s and count < 100_000:
            batch = ahead.result()[None]
            ahead = pool.submit(preprocess, body)
            predict(batch)
            count += 1
        return count / (time.perf_counter() - start)


def served_ok(url: str) -> int:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    match = re.search(r'deploybench_requests_total\{status="200"\} (\d+)', text)
    return int(match.group(1)) if match else 0


def served_point(server: ServerProcess, body: bytes, concurrency: int, duration_s: float) -> tuple:  # type: ignore[type-arg]
    """(ok/s as the client saw it, errors, client name, server CPU ms per answered request)."""
    url, pid = server.base_url, server.proc.pid
    cpu0, ok0 = cpu_seconds([pid]), served_ok(url)
    rate, errors, client = load_rate(server.invocations_url, body, concurrency, duration_s)
    answered = max(served_ok(url) - ok0, 1)
    return rate, errors, client, (cpu_seconds([pid]) - cpu0) * 1000 / answered


def bench_backend(args: argparse.Namespace, backend: str, body: bytes) -> None:
    """Per served config: server up, then rounds of [in-process, served] back to back; median ratios."""
    from deploybench.backends.build import build_variant
    from deploybench.config import ModelSpec

    variant, _ = build_variant(
        ModelSpec(source=args.model), backend, threads=args.threads, cache_dir=args.cache_dir
    )
    serial, _ = inprocess_rate(variant.predict, body, args.duration)
    overlap = overlapped_rate(variant.predict, body, args.duration)
    serial_again, _ = inprocess_rate(variant.predict, body, args.duration)
    print(
        f"{backend}: in-process b1, {args.threads} threads: serial {serial:.1f} / {serial_again:.1f} img/s, "
        f"preprocess overlapped in a thread {overlap:.1f} img/s"
    )
    for config in [c for c in SERVED_CONFIGS if not args.only or c[0] in args.only.split(",")]:
        server = start_server(args.model, backend, args.cache_dir, config, args.threads)
        ratios, cpu_ratios = [], []
        try:
            for _ in range(args.rounds):
                inproc, inproc_cpu = inprocess_rate(variant.predict, body, args.duration)
                rate, errors, client, served_cpu = served_point(server, body, config[5], args.duration)
                ratios.append(rate / inproc)
                cpu_ratios.append(inproc_cpu / served_cpu)
                print(
                    f"{backend}: served {config[0]:11s} {rate:6.1f} img/s vs in-process {inproc:6.1f} -> "
                    f"{rate / inproc:4.2f}; CPU ms/img server {served_cpu:5.1f} vs in-process "
                    f"{inproc_cpu:5.1f} -> {inproc_cpu / served_cpu:4.2f} (errors {errors}, client {client})",
                    flush=True,
                )
        finally:
            stop_server(server)
        print(
            f"{backend}: served {config[0]:11s} MEDIAN throughput ratio {statistics.median(ratios):.2f}, "
            f"CPU-efficiency ratio {statistics.median(cpu_ratios):.2f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torchvision:resnet50")
    parser.add_argument("--backends", default="openvino-int8,eager")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated served config labels (default: all)")
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "deploybench-cache"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop our servers
    body = default_payload_path().read_bytes()
    print(
        f"model {args.model}, {os.cpu_count()} cores, threads {args.threads}, {args.duration:g} s per point"
    )
    for backend in pick_backends(args.backends.split(",")):
        bench_backend(args, backend, body)


if __name__ == "__main__":
    main()
