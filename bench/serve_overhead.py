"""Served vs in-process throughput of the same variant, side by side in one run (not a test).

For each backend: the variant is built here, then for each served configuration `deploybench serve`
is started exactly as a study starts it, and rounds of three neighbouring measurements are taken:
the in-process pipeline (decode + preprocess + predict, batch 1, --threads threads, serial), the
project's load generator (closed loop, --concurrency clients) and wrk (1 thread, the same number of
connections) against the same server. Each ratio compares neighbours in time, so drift from other
processes on the machine hurts less; medians are printed at the end.

Because the load client shares the cores with the server, every served point also shows where the
machine's CPU went during it: the server's front process and its workers (CPU ms per answered
request and % of the machine), the load client, and everything else on the machine (other users).
Decode and preprocess ms per request come from the server's Server-Timing header.

Configurations are WxT[+knob...]: W workers x T threads, knobs ovl (overlap decode), sN (N streams),
nopin, rest (front on the cores no worker has), spin, nospin, tpin (runtime thread pinning), ioN (inter-op
threads), bN (max batch N), dN (max delay N ms; 5 with bN). Run under the CPU lock:

    flock /tmp/deploybench-cpu.lock .venv/bin/python bench/serve_overhead.py \\
        --backends openvino-int8 --configs 1x2,1x2+ovl,2x1,2x1+nopin --duration 8 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from deploybench.config import LoadConfig, ModelSpec, RuntimeKnobs
from deploybench.inputs.payload import default_payload_path, preprocess
from deploybench.load import HttpTarget, run_load
from deploybench.results import Candidate, LoadPoint
from deploybench.stacks.process import ServerProcess, stop_server
from deploybench.stacks.process import start_server as launch_server

WRK_SCRIPT = (
    'local f = io.open(os.getenv("WRK_BODY"), "rb")\nwrk.method = "POST"\nwrk.body = f:read("*all")\n'
)
WRK_SCRIPT += 'f:close()\nwrk.headers["Content-Type"] = "image/jpeg"\n'
KNOB_PATTERNS = {
    r"ovl": {"overlap": True},
    r"nopin": {"pin": False},
    r"rest": {"front": "rest"},
    r"spin": {"spin": True},
    r"nospin": {"spin": False},
    r"tpin": {"thread_pinning": True},
}


def parse_config(text: str) -> Candidate:
    """'1x2+s2+ovl' -> the candidate it names (backend filled in later)."""
    head, *knobs = text.split("+")
    workers, threads = (int(part) for part in head.split("x"))
    runtime: dict[str, object] = {}
    batch, delay = 1, None
    for knob in knobs:
        if knob in KNOB_PATTERNS:
            runtime.update(KNOB_PATTERNS[knob])
        elif match := re.fullmatch(r"(s|io|b|d)(\d+)", knob):
            kind, value = match.group(1), int(match.group(2))
            if kind == "b":
                batch = value
            elif kind == "d":
                delay = float(value)
            else:
                runtime["streams" if kind == "s" else "inter_op_threads"] = value
        else:
            raise SystemExit(f"unknown knob {knob!r} in {text!r}")
    return Candidate(
        backend="-",
        workers=workers,
        threads=threads,
        max_batch_size=batch,
        max_delay_ms=(5.0 if batch > 1 else 0.0) if delay is None else delay,
        runtime=RuntimeKnobs(**runtime),
    )


@dataclass
class CpuSnapshot:
    """CPU seconds of the server's front and workers, of the whole machine, and the answered count."""

    front: float
    workers: float
    machine: float
    answered: int
    at: float = field(default_factory=time.perf_counter)


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def snapshot(server: ServerProcess) -> CpuSnapshot:
    front = psutil.Process(server.proc.pid)
    workers = 0.0
    for child in front.children(recursive=True):
        try:
            workers += _cpu(child)
        except psutil.NoSuchProcess:
            continue
    machine = psutil.cpu_times()
    busy = (
        machine.user
        + machine.system
        + machine.nice
        + getattr(machine, "irq", 0)
        + getattr(machine, "softirq", 0)
    )
    return CpuSnapshot(_cpu(front), workers, busy, served_ok(server.base_url))


def served_ok(url: str) -> int:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    match = re.search(r'deploybench_requests_total\{status="200"\} (\d+)', text)
    return int(match.group(1)) if match else 0


@dataclass
class Served:
    """One served point and where the machine's CPU went while it ran (% of all cores)."""

    client: str
    rps: float
    errors: int
    front_ms: float
    workers_ms: float
    front_pct: float
    workers_pct: float
    client_pct: float
    others_pct: float
    prep_ms: float | None = None


def account(before: CpuSnapshot, after: CpuSnapshot, client_cpu_s: float, point: tuple) -> Served:  # type: ignore[type-arg]
    """Turn two snapshots around a point into per-request and per-machine CPU shares."""
    client, rps, errors, prep_ms = point
    wall = (after.at - before.at) * (os.cpu_count() or 1)
    answered = max(after.answered - before.answered, 1)
    front, workers = after.front - before.front, after.workers - before.workers
    others = max(after.machine - before.machine - front - workers - client_cpu_s, 0.0)
    return Served(
        client, rps, errors, front * 1000 / answered, workers * 1000 / answered,
        100 * front / wall, 100 * workers / wall, 100 * client_cpu_s / wall, 100 * others / wall, prep_ms,
    )  # fmt: skip


def load_point(
    url: str, bodies: list[bytes], concurrency: int, duration_s: float, content_type: str = "image/jpeg"
) -> LoadPoint:
    """One closed-loop point from the project's load generator (three windows, 2 s warm-up)."""
    cfg = LoadConfig(
        concurrency=concurrency, duration_s=duration_s, warmup_s=2.0, window_s=duration_s / 3,
        min_window_requests=10, max_windows=3,
    )  # fmt: skip
    return run_load(HttpTarget(url, bodies, content_type=content_type), cfg).points[0]


def load_rate(
    url: str, body: bytes | list[bytes], concurrency: int, duration_s: float, content_type: str = "image/jpeg"
) -> tuple[float, int, str]:
    """(ok responses/s, errors, client) of one closed-loop point (bench/export_roundtrip.py)."""
    bodies = body if isinstance(body, list) else [body]
    point = load_point(url, bodies, concurrency, duration_s, content_type)
    return point.throughput_rps, point.error_count, "deploybench.load"


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU seconds of these processes and their children (bench/stacks.py)."""
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            total += sum(_cpu(member) for member in [proc, *proc.children(recursive=True)])
        except psutil.NoSuchProcess:
            continue
    return total


def ours(server: ServerProcess, body: bytes, concurrency: int, duration_s: float) -> Served:
    before = snapshot(server)
    point = load_point(server.invocations_url, [body], concurrency, duration_s)
    after = snapshot(server)
    timing = point.server_timing_ms
    prep = timing.get("decode", 0.0) + timing.get("preprocess", 0.0) if timing else None
    client_s = (point.client_cpu_pct or 0.0) / 100 * (after.at - before.at)
    return account(
        before, after, client_s, ("deploybench.load", point.throughput_rps, point.error_count, prep)
    )


def wrk(server: ServerProcess, body_path: Path, concurrency: int, duration_s: float, script: Path) -> Served:
    """wrk, 1 thread, `concurrency` connections; its CPU comes from wait4's rusage."""
    env = {**os.environ, "WRK_BODY": str(body_path)}
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{duration_s:g}s",
        "-s",
        str(script),
        server.invocations_url,
    ]
    subprocess.run([*command[:3], "-d1s", *command[4:]], env=env, capture_output=True, check=False)  # warm
    before = snapshot(server)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, _, usage = os.wait4(proc.pid, 0)
    after = snapshot(server)
    text = proc.stdout.read().decode() if proc.stdout else ""
    rps = float(m.group(1)) if (m := re.search(r"Requests/sec:\s+([\d.]+)", text)) else 0.0
    errors = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", text)) else 0
    return account(before, after, usage.ru_utime + usage.ru_stime, ("wrk", rps, errors, None))


def machine_busy_s() -> float:
    times = psutil.cpu_times()
    return times.user + times.system + times.nice + getattr(times, "irq", 0) + getattr(times, "softirq", 0)


def inprocess_rate(predict, body: bytes, duration_s: float) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """(images/s, CPU ms per image, % of the machine others used meanwhile) of decode + preprocess +
    predict(batch 1) in a tight serial loop."""
    for _ in range(3):
        predict(preprocess(body)[None])
    me = psutil.Process()
    cpu0, busy0 = _cpu(me), machine_busy_s()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < duration_s and count < 100_000:
        predict(preprocess(body)[None])
        count += 1
    wall = time.perf_counter() - start
    own, busy = _cpu(me) - cpu0, machine_busy_s() - busy0
    others = 100 * max(busy - own, 0.0) / (wall * (os.cpu_count() or 1))
    return count / wall, own * 1000 / max(count, 1), others


def show(label: str, inproc: tuple[float, float, float], point: Served) -> None:
    prep = f", decode+prep {point.prep_ms:.2f} ms" if point.prep_ms is not None else ""
    rate, cpu_ms, _ = inproc
    print(
        f"  {label:16s} {point.client:16s} {point.rps:7.1f} req/s vs in-process {rate:6.1f} -> "
        f"{point.rps / rate:4.2f} | CPU ms/req front {point.front_ms:5.2f} "
        f"workers {point.workers_ms:6.2f} vs in-process {cpu_ms:6.2f}{prep}"
        f" | machine: front {point.front_pct:4.1f}% workers {point.workers_pct:4.1f}% client "
        f"{point.client_pct:4.1f}% others {point.others_pct:4.1f}% | errors {point.errors}",
        flush=True,
    )


def measure_round(args, server, variant, text: str, body: bytes, results: dict) -> bool:  # type: ignore[no-untyped-def]
    """In-process, our client, wrk back to back; kept only when other users left the machine alone
    (others' share of the CPU under --max-others-pct in all three), else shown and dropped."""
    inproc = inprocess_rate(variant.predict, body, args.duration)
    points = [ours(server, body, args.concurrency, args.duration)]
    if args.wrk:
        points.append(wrk(server, args.payload, args.concurrency, args.duration, args.wrk_script))
    others = max(inproc[2], *(point.others_pct for point in points))
    kept = others <= args.max_others_pct
    for point in points:
        show(text + ("" if kept else " DROPPED"), inproc, point)
    if not kept:
        print(
            f"  {text}: round dropped, others used {others:.0f}% of the machine (in-process {inproc[2]:.0f}%)"
        )
        return False
    results.setdefault("inproc", []).append(inproc[0])
    for point in points:
        results.setdefault(point.client, []).append(point.rps / inproc[0])
        results.setdefault(f"rps {point.client}", []).append(point.rps)
        results.setdefault(f"cpu {point.client}", []).append(inproc[1] / (point.front_ms + point.workers_ms))
    return True


def bench_config(args: argparse.Namespace, variant, backend: str, text: str, body: bytes) -> dict:  # type: ignore[no-untyped-def]
    candidate = parse_config(text).model_copy(update={"backend": backend})
    log = Path(tempfile.mkstemp(prefix="serve-overhead-", suffix=".log")[1])
    server = launch_server(
        ModelSpec(source=args.model), candidate, log, cache_dir=args.cache_dir, timeout_s=600
    )
    results: dict[str, list[float]] = {}
    try:
        clean, attempts = 0, 0
        while clean < args.rounds and attempts < args.rounds * args.attempts:
            attempts += 1
            clean += measure_round(args, server, variant, text, body, results)
    finally:
        stop_server(server)
    if clean < args.rounds:
        print(f"  {text}: only {clean} of {args.rounds} rounds had others under {args.max_others_pct:g}%")
    return {name: statistics.median(values) for name, values in results.items() if values}


def bench_backend(args: argparse.Namespace, backend: str, body: bytes) -> dict[str, dict]:  # type: ignore[type-arg]
    from deploybench.backends.build import build_variant

    variant, _ = build_variant(
        ModelSpec(source=args.model), backend, threads=args.threads, cache_dir=args.cache_dir
    )
    print(
        f"{backend} ({variant.precision}), in-process reference: {args.threads} threads, serial", flush=True
    )
    return {text: bench_config(args, variant, backend, text, body) for text in args.configs.split(",")}


def _cell(row: dict, name: str, width: int, digits: int = 2) -> str:  # type: ignore[type-arg]
    return f"{row[name]:{width}.{digits}f}" if name in row else f"{'-':>{width}s}"


def summary(backend: str, medians: dict[str, dict]) -> None:  # type: ignore[type-arg]
    """Medians of the kept rounds: served / in-process ratios, req/s, CPU efficiency per client."""
    print(f"\n{backend}: medians of the kept rounds (batch 1 unless bN); CPU efficiency = in-process CPU ms")
    print("  per image / server CPU ms per answered request (1.00: serving costs no extra CPU)")
    print(
        f"  {'config':16s} {'ratio ours':>10s} {'ratio wrk':>10s} {'req/s ours':>10s} {'req/s wrk':>10s} "
        f"{'CPU eff ours':>12s} {'CPU eff wrk':>12s} {'in-proc img/s':>13s}"
    )
    for text, row in medians.items():
        cells = [
            _cell(row, "deploybench.load", 10), _cell(row, "wrk", 10),
            _cell(row, "rps deploybench.load", 10, 1), _cell(row, "rps wrk", 10, 1),
            _cell(row, "cpu deploybench.load", 12), _cell(row, "cpu wrk", 12), _cell(row, "inproc", 13, 1),
        ]  # fmt: skip
        print(f"  {text:16s} " + " ".join(cells))
    one, two = medians.get("1x2", {}), medians.get("2x1", {})
    for client in ("deploybench.load", "wrk"):
        key = f"rps {client}"
        if key in one and key in two:
            print(f"  2x1 / 1x2 served req/s with {client}: {two[key] / one[key]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torchvision:resnet50")
    parser.add_argument("--backends", default="openvino-int8")
    parser.add_argument("--configs", default="1x2,1x2+ovl,2x1,2x1+nopin")
    parser.add_argument("--threads", type=int, default=2, help="threads of the in-process reference")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--max-others-pct", type=float, default=100.0, help="drop rounds where other users took more CPU"
    )
    parser.add_argument("--attempts", type=int, default=4, help="rounds tried per kept round")
    parser.add_argument(
        "--no-wrk", dest="wrk", action="store_false", help="only the project's load generator"
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "deploybench-cache"
    )
    args = parser.parse_args()
    if args.wrk and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (or pass --no-wrk)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop our servers
    args.payload = default_payload_path()
    body = args.payload.read_bytes()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    args.wrk_script = Path(script.name)
    print(f"model {args.model}, {os.cpu_count()} cores, c{args.concurrency}, {args.duration:g} s per point")
    for backend in args.backends.split(","):
        summary(backend, bench_backend(args, backend, body))


if __name__ == "__main__":
    main()
