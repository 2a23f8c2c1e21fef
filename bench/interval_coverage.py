"""Do a point's 95% intervals cover what the next runs of the same server measure? (not a test)

One real server (`deploybench serve`, started as a study starts it), N back-to-back closed-loop points
from the project's load generator (--concurrency clients, --duration seconds each after a warm-up).
For each run: does its throughput interval, and its p99 interval, contain the median of the other
runs' estimates? Prints each run and the two coverage counts; a p99 interval the run could not give
(too few requests) counts as not covering, and is shown as such.

--calibrate K first measures K back-to-back points of the same server, as `deploybench load --repeat K`
does, and merges their spread into this machine's between-run record (deploybench.load.noise; in
--noise-dir, default the record every later point interval on this machine reads). The coverage runs
are then measured within-run only and counted twice: as they are, and with the record's between-run
term added (intervals.widen, as every point interval adds it). For reference it also counts them with
a term from the other runs' own spread (leave one out), what a perfectly calibrated record would give.

    flock /tmp/deploybench-cpu.lock .venv/bin/python bench/interval_coverage.py \\
        --backend openvino-int8 --config 2x1+b4+d2 --calibrate 5 --runs 10 --duration 15
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from serve_overhead import parse_config  # bench/ is on sys.path when a script there runs

from deploybench.config import LoadConfig, ModelSpec
from deploybench.inputs.payload import default_payload_path
from deploybench.load import HttpTarget, repeat_point, run_load
from deploybench.load.intervals import WITHIN_ONLY, t_quantile, widen
from deploybench.load.noise import (
    NOISE_DIR_ENV,
    MachineNoise,
    Spread,
    load_noise,
    prior_noise,
    record_repeats,
    spread_of,
)
from deploybench.results import Interval, LoadPoint
from deploybench.stacks.process import start_server, stop_server


def load_config(concurrency: int, duration_s: float) -> LoadConfig:
    """A closed-loop point as `deploybench load --duration D` measures it: three windows of D/3."""
    return LoadConfig(
        concurrency=concurrency,
        duration_s=duration_s,
        warmup_s=3.0,
        window_s=duration_s / 3,
        max_windows=3,
        min_window_requests=5,
    )


def one_point(url: str, body: bytes, concurrency: int, duration_s: float) -> LoadPoint:
    return run_load(HttpTarget(url, [body]), load_config(concurrency, duration_s)).points[0]


def calibrate(url: str, body: bytes, args: argparse.Namespace) -> MachineNoise:
    """K back-to-back points, as `deploybench load --repeat K`, merged into the machine's record."""
    cfg = load_config(args.concurrency, args.duration)
    report = repeat_point(HttpTarget(url, [body]), cfg, args.calibrate)
    for point in report.points:
        print(
            f"calibration: {point.throughput_rps:8.2f} req/s  p99 {point.latency.p99_ms:8.2f} ms", flush=True
        )
    by = f"bench/interval_coverage.py --calibrate {args.calibrate}: c={args.concurrency} on {url}"
    return record_repeats(report.points, by=by, root=args.noise_dir)


def covers(interval: Interval | None, value: float) -> bool:
    return interval is not None and interval.low <= value <= interval.high


def within_run(point: LoadPoint) -> LoadPoint:
    """The point's intervals without the prior its machine-with-no-record intervals carry: each side's
    half-width h0 = sqrt(h² - term²), the inverse of intervals.widen with the same prior."""
    prior = prior_noise()

    def bare(interval: Interval | None, estimate: float, spread: Spread | None) -> Interval | None:
        if interval is None or spread is None or "between-run prior" not in interval.method:
            return interval
        term = t_quantile(interval.confidence, spread.df) * spread.rel_sd * estimate
        below = math.sqrt(max(0.0, (estimate - interval.low) ** 2 - term**2))
        above = math.sqrt(max(0.0, (interval.high - estimate) ** 2 - term**2))
        method = interval.method.split(" + between-run prior")[0] + f"; {WITHIN_ONLY}"
        return interval.model_copy(
            update={"low": estimate - below, "high": estimate + above, "method": method}
        )

    return point.model_copy(
        update={
            "throughput_ci": bare(point.throughput_ci, point.throughput_rps, prior.throughput),
            "p99_ci": bare(point.p99_ci, point.latency.p99_ms, prior.p99),
        }
    )


def with_term(point: LoadPoint, noise: MachineNoise | None) -> LoadPoint:
    """The point's within-run intervals with `noise`'s between-run term, as every point interval adds it."""
    point = within_run(point)
    if noise is None:
        return point

    def term(interval: Interval | None, estimate: float, spread: Spread | None) -> Interval | None:
        if interval is None:
            return None
        bare = interval.model_copy(update={"method": interval.method.removesuffix(f"; {WITHIN_ONLY}")})
        return widen(bare, estimate, spread, noise)

    return point.model_copy(
        update={
            "throughput_ci": term(point.throughput_ci, point.throughput_rps, noise.throughput),
            "p99_ci": term(point.p99_ci, point.latency.p99_ms, noise.p99),
        }
    )


def leave_one_out(points: list[LoadPoint], noise: MachineNoise) -> Callable[[int, LoadPoint], LoadPoint]:
    """Each run with a term from the other runs' own spread: a perfectly calibrated record."""

    def widened(index: int, point: LoadPoint) -> LoadPoint:
        others = points[:index] + points[index + 1 :]
        update = {
            "throughput": spread_of([p.throughput_rps for p in others]),
            "p99": spread_of([p.latency.p99_ms for p in others]),
        }
        return with_term(point, noise.model_copy(update=update))

    return widened


def coverage(
    points: list[LoadPoint], adjust: Callable[[int, LoadPoint], LoadPoint] = lambda _, p: p
) -> tuple[int, int]:
    """How many runs' intervals contain the median of the other runs' estimates (throughput, p99)."""
    rps_hits = p99_hits = 0
    for index, point in enumerate(points):
        others = points[:index] + points[index + 1 :]
        shown = adjust(index, point)
        rps_hits += covers(shown.throughput_ci, statistics.median(p.throughput_rps for p in others))
        p99_hits += covers(shown.p99_ci, statistics.median(p.latency.p99_ms for p in others))
    return rps_hits, p99_hits


def _fmt(interval: Interval | None) -> str:
    return "too few requests" if interval is None else f"{interval.low:8.2f}-{interval.high:8.2f}"


def measure(url: str, body: bytes, args: argparse.Namespace) -> tuple[MachineNoise | None, list[LoadPoint]]:
    """The calibration (or the record as it is), then the coverage runs, within-run only."""
    noise = calibrate(url, body, args) if args.calibrate else load_noise(args.noise_dir)
    # the runs as a machine with no record reports them (the default prior); within_run() strips it
    os.environ[NOISE_DIR_ENV] = tempfile.mkdtemp(prefix="no-noise-record-")
    points = []
    for run in range(args.runs):
        point = one_point(url, body, args.concurrency, args.duration)
        points.append(point)
        wide, own = with_term(point, noise), within_run(point)
        print(
            f"run {run + 1:2d}: {point.throughput_rps:8.2f} req/s [{_fmt(own.throughput_ci)}] "
            f"[{_fmt(point.throughput_ci)}] [{_fmt(wide.throughput_ci)}]  p99 {point.latency.p99_ms:8.2f} ms "
            f"[{_fmt(own.p99_ci)}] [{_fmt(point.p99_ci)}] [{_fmt(wide.p99_ci)}]  n={point.ok}",
            flush=True,
        )
    return noise, points


def summary(noise: MachineNoise | None, points: list[LoadPoint]) -> None:
    count = len(points)
    rows = [
        ("within-run only", coverage(points, lambda _, p: within_run(p))),
        ("as reported with no record (the default prior)", coverage(points)),
    ]
    if noise is not None:
        rows.append(
            ("with this machine's between-run term", coverage(points, lambda _, p: with_term(p, noise)))
        )
        rows.append(
            (
                "with a term from the other runs (leave one out)",
                coverage(points, leave_one_out(points, noise)),
            )
        )
    print("intervals covering the median of the other runs' estimates:")
    for label, (rps_hits, p99_hits) in rows:
        print(f"  {label}: throughput {rps_hits} of {count}, p99 {p99_hits} of {count}")
    widened = with_term(points[0], noise) if points else None
    for name in ("throughput_ci", "p99_ci"):
        interval = getattr(widened, name, None)
        print(f"{name}: {interval.method if interval else 'none'}")


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
    parser.add_argument("--calibrate", type=int, default=0, help="K repeats into the noise record first")
    parser.add_argument("--noise-dir", type=Path, default=None, help="the noise record's folder")
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
    try:
        noise, points = measure(server.invocations_url, body, args)
    finally:
        stop_server(server)
    summary(noise, points)


if __name__ == "__main__":
    main()
