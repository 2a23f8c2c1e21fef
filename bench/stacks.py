"""Serving stacks side by side, one variant, one run (not a test): peak req/s, p99 at 16 clients, CPU/request.

Every installed stack (deploybench's server, TorchServe, Triton via PyTriton, LitServe) serves the same
variant (ONNX Runtime fp32 of ResNet50 by default: the one variant all four can run) with the same
canonical knobs (1 worker x all cores, no batching unless asked), and the same load generator drives
each in its own protocol with the bundled JPEG: a closed-loop sweep 1, 2, 4, 8, 16 clients. Reported
per stack: the peak (highest throughput among stable points, else the best point, flagged ~), p50/p99
at 16 clients, and the server's CPU per answered request at 16 clients (user + system seconds of its
whole process tree, psutil), which does not depend on how much CPU other processes took. deploybench
is measured again at the end: the drift between its two runs bounds how far apart the others can be
and still be called a tie.

    flock /tmp/deploybench-cpu.lock .venv/bin/python bench/stacks.py --json stacks.json

The load client runs on the same cores as the servers: every figure pays for it alike.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from serve_overhead import cpu_seconds

from deploybench.config import LoadConfig, ModelSpec
from deploybench.inputs.payload import default_payload_path
from deploybench.load import run_points
from deploybench.results import Candidate, LoadPoint
from deploybench.stacks import StackLaunch, StackServer, get_stack, resolve_stacks
from deploybench.stacks.process import ServerStartError

LEVELS = [1, 2, 4, 8, 16]


def load_config(args: argparse.Namespace) -> LoadConfig:
    return LoadConfig(
        window_s=args.window,
        min_window_requests=20,
        max_windows=5,
        warmup_s=1.0,
        duration_s=args.window * 6,
        stability_tolerance=0.10,
    )


def start(args: argparse.Namespace, name: str, work: Path) -> StackServer:
    candidate = Candidate(
        backend=args.backend, stack=name, workers=args.workers, threads=args.threads,
        max_batch_size=args.max_batch_size, max_delay_ms=args.max_delay_ms,
    )  # fmt: skip
    folder = work / f"{name}-{time.monotonic_ns()}"
    launch = StackLaunch(
        ModelSpec(source=args.model), candidate, folder, folder.with_suffix(".log"), args.cache_dir, 900,
        on_message=lambda message: print(f"  {message}", flush=True),
    )  # fmt: skip
    return get_stack(name).start(launch)


def c16_cpu(server: StackServer, body: bytes, cfg: LoadConfig) -> tuple[LoadPoint, float]:
    """The 16-client point again, with the server tree's CPU seconds counted around it."""
    before = cpu_seconds([server.pid])
    point = run_points(server.target([body]), cfg, concurrencies=[16]).points[0]
    used = cpu_seconds([server.pid]) - before
    return point, used * 1000 / max(point.ok, 1)


def measure(args: argparse.Namespace, name: str, body: bytes, work: Path) -> dict[str, Any]:
    cfg = load_config(args)
    started = time.monotonic()
    server = start(args, name, work)
    ready_s = time.monotonic() - started
    try:
        top1 = server.predict(body)[0]
        sweep = run_points(server.target([body]), cfg, concurrencies=LEVELS).points
        c16, cpu_ms = c16_cpu(server, body, cfg)
        reported = server.reported()
    finally:
        server.stop()
    stable = [p for p in sweep if p.stable and not p.client_bound]
    peak = max(stable or sweep, key=lambda p: p.throughput_rps)
    return {
        "stack": name,
        "protocol": server.stack.protocol,
        "ready_s": round(ready_s, 1),
        "top1": top1,
        "peak_rps": peak.throughput_rps,
        "peak_concurrency": peak.concurrency,
        "peak_trusted": bool(stable),
        "peak_p99_ms": peak.latency.p99_ms,
        "c16_rps": c16.throughput_rps,
        "c16_p50_ms": c16.latency.p50_ms,
        "c16_p99_ms": c16.latency.p99_ms,
        "c16_errors": c16.error_count,
        "cpu_ms_per_request": cpu_ms,
        "settings": server.settings,
        "reported": reported,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'stack':<14}{'protocol':<22}{'peak req/s':>11}{'@c':>4}{'p99@peak':>9}{'c16 req/s':>10}"
    print(head + f"{'c16 p50':>8}{'c16 p99':>8}{'CPU ms/req':>11}{'top1':>6}{'ready s':>8}")
    for r in rows:
        flag = " " if r["peak_trusted"] else "~"
        print(
            f"{r['stack']:<14}{r['protocol']:<22}{r['peak_rps']:>10.1f}{flag}{r['peak_concurrency']:>4}"
            f"{r['peak_p99_ms']:>9.1f}{r['c16_rps']:>10.1f}{r['c16_p50_ms']:>8.1f}{r['c16_p99_ms']:>8.1f}"
            f"{r['cpu_ms_per_request']:>11.1f}{r['top1']:>6}{r['ready_s']:>8.1f}"
        )
    print("~ no stable, non-client-bound point: the best point measured")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torchvision:resnet50")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--stacks", default="all")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-batch-size", type=int, default=1)
    parser.add_argument("--max-delay-ms", type=float, default=0.0)
    parser.add_argument("--window", type=float, default=2.0, help="seconds per measuring window")
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "deploybench-cache"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop our servers
    body = default_payload_path().read_bytes()
    names = resolve_stacks(args.stacks.split(","))
    order = [*names, "deploybench"] if "deploybench" in names else names  # deploybench again: drift
    print(f"model {args.model}, backend {args.backend}, {os.cpu_count()} cores, stacks {', '.join(names)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="deploybench-stacks-") as work:
        for name in order:
            print(f"{name}: starting", flush=True)
            try:
                rows.append(measure(args, name, body, Path(work)))
            except ServerStartError as exc:
                print(f"{name}: did not start: {exc}\n{exc.log_tail}", flush=True)
                continue
            print(f"{name}: peak {rows[-1]['peak_rps']:.1f} req/s, c16 p99 {rows[-1]['c16_p99_ms']:.1f} ms")
    print_table(rows)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"cache_dir": str(args.cache_dir), "json": str(args.json)},
                    "rows": rows,
                },
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
