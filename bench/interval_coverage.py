"""Do a point's 95% intervals cover what the next runs of the same server measure? (not a test)

One real server (`deploybench serve`, started as a study starts it), N back-to-back closed-loop points
from the project's load generator (--concurrency clients, --duration seconds each after a warm-up).
For each run: does its throughput interval, and its p99 interval, contain the median of the other
runs' estimates? Prints each run and the two coverage counts; a p99 interval the run could not give
(too few requests) counts as not covering, and is shown as such.

    flock /tmp/deploybench-cpu.lock .venv/bin/python bench/interval_coverage.py \\
        --backend openvino-int8 --config 2x1+b4+d2 --runs 10 --duration 15
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from serve_overhead import parse_config  # bench/ is on sys.path when a script there runs

from deploybench.config import LoadConfig, ModelSpec
from deploybench.inputs.payload import default_payload_path
from deploybench.load import HttpTarget, run_load
from deploybench.results import Interval, LoadPoint
from deploybench.stacks.process import start_server, stop_server


def one_point(url: str, body: bytes, concurrency: int, duration_s: float) -> LoadPoint:
    """One closed-loop point as `deploybench load --duration D` measures it: three windows of D/3."""
    cfg = LoadConfig(
        concurrency=concurrency,
        duration_s=duration_s,
        warmup_s=3.0,
        window_s=duration_s / 3,
        max_windows=3,
        min_window_requests=5,
    )
    return run_load(HttpTarget(url, [body]), cfg).points[0]


def covers(interval: Interval | None, value: float) -> bool:
    return interval is not None and interval.low <= value <= interval.high


def coverage(points: list[LoadPoint]) -> tuple[int, int]:
    """How many runs' intervals contain the median of the other runs' estimates (throughput, p99)."""
    rps_hits = p99_hits = 0
    for index, point in enumerate(points):
        others = points[:index] + points[index + 1 :]
        rps_hits += covers(point.throughput_ci, statistics.median(p.throughput_rps for p in others))
        p99_hits += covers(point.p99_ci, statistics.median(p.latency.p99_ms for p in others))
    return rps_hits, p99_hits


def _fmt(interval: Interval | None) -> str:
    return "too few requests" if interval is None else f"{interval.low:8.2f}-{interval.high:8.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="torchvision:resnet50")
    parser.add_argument("--backend", default="openvino-int8")
    parser.add_argument("--config", default="2x1+b4+d2", help="WxT[+knob...] as bench/serve_overhead.py")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    candidate = parse_config(args.config).model_copy(update={"backend": args.backend})
    log = Path(tempfile.mkstemp(prefix="interval-coverage-", suffix=".log")[1])
    server = start_server(
        ModelSpec(source=args.model, weights="random"),
        candidate,
        log,
        cache_dir=args.cache_dir,
        timeout_s=900,
    )
    body = default_payload_path().read_bytes()
    points = []
    try:
        for run in range(args.runs):
            point = one_point(server.invocations_url, body, args.concurrency, args.duration)
            points.append(point)
            print(
                f"run {run + 1:2d}: {point.throughput_rps:8.2f} req/s [{_fmt(point.throughput_ci)}]  "
                f"p99 {point.latency.p99_ms:8.2f} ms [{_fmt(point.p99_ci)}]  n={point.ok}",
                flush=True,
            )
    finally:
        stop_server(server)
    rps_hits, p99_hits = coverage(points)
    method = next((p.throughput_ci.method for p in points if p.throughput_ci), "none")
    print(f"throughput intervals covering the others' median: {rps_hits} of {len(points)}")
    print(f"p99 intervals covering the others' median: {p99_hits} of {len(points)}")
    print(f"interval: {method}")


if __name__ == "__main__":
    main()
