"""Benchmark: our load generator vs wrk and vs MLPerf LoadGen, side by side in one run.

    .venv/bin/python bench/loadgen.py [--duration 10] [--concurrency 16] [--md1-duration 60] [--json out.json]

1. Trivial endpoint (uvicorn + httptools + uvloop, raw ASGI), 21 KB POST body: wrk (1 thread), ours
   with 1 process and with 2 processes, same concurrency. Target: >= 5,000 req/s per process.
2. The same endpoint with a fixed 10 ms service time: our p50 vs wrk's. Target: within 10%.
3. An M/D/1 queue (one request at a time, exactly 10 ms each), Poisson arrivals at 40% and 70% load:
   our open loop (replaying the schedule LoadGen issued) vs MLPerf LoadGen's Server scenario
   (bench/md1.py), in pairs (median ratio), and the exact M/D/1
   figures. Target: ours within 5% of LoadGen.
With --pin the server runs on CPU 0 and the clients on the other CPUs (good on a quiet machine).
Needs `wrk` (Debian package `wrk`) and `mlcommons-loadgen` (pip, the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from md1 import md1_sojourn_ms, run_loadgen
from md1 import run_ours as run_ours_open

from deploybench.config import LoadConfig
from deploybench.inputs.payload import default_payload_path
from deploybench.load import HttpTarget, run_load

SERVER = Path(__file__).with_name("trivial_server.py")
LUA = """local f = io.open("{path}", "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"
"""


def _cpus(pin: bool) -> tuple[set[int], set[int]]:
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) == 1:
        return set(cpus), set(cpus)
    return {cpus[0]}, set(cpus[1:])


def _pinned(cpus: set[int]) -> Callable[[], None]:
    return lambda: os.sched_setaffinity(0, cpus)


def start_server(port: int, delay_ms: float, cpus: set[int], serial: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, str(SERVER), str(port), str(delay_ms), *(["serial"] if serial else [])]
    proc = subprocess.Popen(cmd, preexec_fn=_pinned(cpus))  # noqa: PLW1509 - no threads started yet

    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("trivial server did not start")


def run_wrk(url: str, lua: Path, concurrency: int, duration: float, cpus: set[int]) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{int(duration)}s", "--latency", "-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, preexec_fn=_pinned(cpus)).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"\s50%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return {"rps": rps, "p50_ms": float(value) * scale}


def run_ours(url: str, body: bytes, concurrency: int, duration: float, processes: int) -> dict[str, float]:
    cfg = LoadConfig(
        concurrency=concurrency,
        processes=processes,
        warmup_s=1.0,
        warmup_requests=100,
        window_s=max(1.0, duration / 5),
        min_window_requests=100,
        max_windows=5,
        duration_s=duration + 1.0,
    )
    point = run_load(HttpTarget(url, [body]), cfg).points[0]
    return {
        "rps": point.throughput_rps,
        "p50_ms": point.latency.p50_ms,
        "p99_ms": point.latency.p99_ms,
        "client_cpu_pct": point.client_cpu_pct or 0.0,
        "late": point.late_send_fraction or 0.0,
        "errors": point.error_count,
        "stable": point.stable,
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--port", type=int, default=18777)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=2, help="alternate runs; keep each client's best")
    parser.add_argument("--md1-duration", type=float, default=30.0, help="seconds per M/D/1 run")
    parser.add_argument(
        "--md1-pairs",
        type=int,
        default=3,
        help="LoadGen-then-ours pairs per load (this machine's noise moves one run's "
        "p99 by tens of %%: the verdict is on the median of the pairs' ratios)",
    )
    parser.add_argument("--md1-service-ms", type=float, default=10.0)
    parser.add_argument("--skip-wrk", action="store_true")
    parser.add_argument("--skip-md1", action="store_true")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="server on CPU 0, clients on the others (only on a quiet machine: pinned "
        "processes cannot dodge other load)",
    )
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    if not args.skip_wrk and shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    server_cpus, client_cpus = _cpus(args.pin)
    os.sched_setaffinity(0, client_cpus)  # our workers (threads and spawned processes) inherit this
    body = default_payload_path().read_bytes()
    results: dict[str, dict] = {}
    if not args.skip_wrk:
        with tempfile.TemporaryDirectory() as tmp:
            lua = Path(tmp) / "post.lua"
            lua.write_text(LUA.format(path=default_payload_path()), encoding="utf-8")
            for delay_ms, port in ((0.0, args.port), (10.0, args.port + 1)):
                server = start_server(port, delay_ms, server_cpus)
                url = f"http://127.0.0.1:{port}/invocations"
                try:
                    results.update(bench_endpoint(url, delay_ms, lua, body, args, client_cpus))
                finally:
                    server.terminate()
                    server.wait(timeout=10)
        report(results, args, len(body), server_cpus, client_cpus)
    if not args.skip_md1:
        md1 = bench_md1(body, args, server_cpus)
        report_md1(md1, args)
        results["md1"] = md1
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


def bench_md1(body: bytes, args: argparse.Namespace, server_cpus: set[int]) -> dict[str, dict]:
    """LoadGen, then ours replaying the schedule LoadGen issued, in pairs, against one M/D/1 server at
    40% and 70% of its capacity: both clients see the same arrivals, back to back."""
    service_s = args.md1_service_ms / 1000
    server = start_server(args.port + 2, args.md1_service_ms, server_cpus, serial=True)
    url = f"http://127.0.0.1:{args.port + 2}/invocations"
    rows: dict[str, dict] = {}
    try:
        for load in (0.4, 0.7):
            rate = load / service_s
            tag = f"{load:.0%}"
            rows[f"theory_{tag}"] = {
                "p50_ms": md1_sojourn_ms(rate, service_s, 0.50),
                "p99_ms": md1_sojourn_ms(rate, service_s, 0.99),
                "rps": rate,
            }
            for pair in range(args.md1_pairs):
                loadgen, schedule = run_loadgen(url, body, rate, args.md1_duration, seed=7 + pair)
                rows[f"loadgen_{tag}_{pair}"] = loadgen
                rows[f"ours_{tag}_{pair}"] = run_ours_open(
                    url, body, rate, loadgen["duration_s"], seed=7 + pair, intervals_us=schedule
                )
    finally:
        server.terminate()
        server.wait(timeout=10)
    return rows


def md1_ratios(rows: dict[str, dict], tag: str) -> dict[str, float]:
    """The median over the pairs of ours/LoadGen, for p50 and p99."""
    pairs = [(rows[k], rows[k.replace("loadgen_", "ours_")]) for k in rows if k.startswith(f"loadgen_{tag}_")]
    return {key: statistics.median(o[key] / g[key] for g, o in pairs) for key in ("p50_ms", "p99_ms")}


def report_md1(rows: dict[str, dict], args: argparse.Namespace) -> None:
    print(
        f"\nM/D/1: one request at a time, {args.md1_service_ms:g} ms each, Poisson arrivals, "
        f"~{args.md1_duration:g} s per client run, load average {os.getloadavg()[0]:.2f}"
    )
    print("ours_*: replaying the very schedule the LoadGen run before it issued (the same arrivals)")
    print(f"{'run':<16}{'requests':>9}{'req/s':>9}{'p50 ms':>10}{'p99 ms':>10}{'lateness p99':>14}")
    for name, row in rows.items():
        print(
            f"{name:<16}{row.get('requests', 0):>9}{row['rps']:>9.1f}{row['p50_ms']:>10.3f}"
            f"{row['p99_ms']:>10.3f}{row.get('lateness_p99_ms', float('nan')):>14.3f}"
        )
    for tag in ("40%", "70%"):
        ratios = md1_ratios(rows, tag)
        rows[f"ratio_{tag}"] = ratios
        verdict = "met" if all(abs(r - 1) <= 0.05 for r in ratios.values()) else "NOT met"
        print(
            f"{tag} load: ours/LoadGen, median of {args.md1_pairs} pairs: p50 {ratios['p50_ms']:.3f}, "
            f"p99 {ratios['p99_ms']:.3f} (target within 5%: {verdict})"
        )


def bench_endpoint(
    url: str, delay_ms: float, lua: Path, body: bytes, args: argparse.Namespace, client_cpus: set[int]
) -> dict[str, dict]:
    """wrk and ours against one endpoint, interleaved, so a burst of noise hits every client alike."""
    tag = f"{delay_ms:g}ms"
    runs: dict[str, Callable[[], dict]] = {
        f"wrk_{tag}": lambda: run_wrk(url, lua, args.concurrency, args.duration, client_cpus),
        f"ours_1p_{tag}": lambda: run_ours(url, body, args.concurrency, args.duration, 1),
    }
    if delay_ms == 0:
        runs[f"ours_2p_{tag}"] = lambda: run_ours(url, body, args.concurrency, args.duration, 2)
    results: dict[str, dict] = {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            row = run()
            best = results.get(name)
            if best is None or _better(row, best, by_p50=delay_ms > 0):
                results[name] = row
    return results


def _better(row: dict, best: dict, by_p50: bool) -> bool:
    """Best of the repeats: lowest p50 with a service time, else highest req/s."""
    return row["p50_ms"] < best["p50_ms"] if by_p50 else row["rps"] > best["rps"]


def report(
    results: dict[str, dict],
    args: argparse.Namespace,
    body_len: int,
    server_cpus: set[int],
    client_cpus: set[int],
) -> None:
    print(
        f"\nbody {body_len} bytes, concurrency {args.concurrency}, ~{args.duration:g} s per run, "
        f"server on CPUs {sorted(server_cpus)}, clients on {sorted(client_cpus)}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'run':<16}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'client CPU':>12}{'late':>8}")
    for name, row in results.items():
        print(
            f"{name:<16}{row['rps']:>10.0f}{row['p50_ms']:>10.3f}{row.get('p99_ms', float('nan')):>10.3f}"
            f"{row.get('client_cpu_pct', float('nan')):>11.0f}%{row.get('late', float('nan')):>8.3f}"
        )
    one, two, wrk = results["ours_1p_0ms"], results["ours_2p_0ms"], results["wrk_0ms"]
    p50_ratio = results["ours_1p_10ms"]["p50_ms"] / results["wrk_10ms"]["p50_ms"]
    print(
        f"\nours 1 process : {one['rps']:.0f} req/s = {one['rps'] / wrk['rps']:.2f}x wrk "
        f"(target >= 5,000 req/s: {'met' if one['rps'] >= 5000 else 'NOT met'})"
    )
    print(
        f"ours 2 processes: {two['rps']:.0f} req/s = {two['rps'] / wrk['rps']:.2f}x wrk, "
        f"{two['rps'] / one['rps']:.2f}x one process"
    )
    print(
        f"10 ms service: p50 ours/wrk = {p50_ratio:.3f} "
        f"(target within 10%: {'met' if abs(p50_ratio - 1) <= 0.10 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
