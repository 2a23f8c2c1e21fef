"""Benchmark: the traffic plan's check (deploybench check-plan) beside MLPerf LoadGen's Server scenario.

    PYTHONPATH=src .venv/bin/python bench/traffic_check.py STUDY --traffic day.csv --p99-ms 100 \
        [--candidate TRIAL_ID] [--over 0.2] [--loadgen-s 30] [--repeat N] [--loadgen-first] \
        [--cache-dir DIR] [--json F]

The plan's candidate is served once, exactly as its trial was (deploybench.study.plan_check.served);
then, at the most one instance is planned to take and at 20% above it, each in turn, --repeat times
(the rates taking turns, run k with its own arrivals, as check-plan --repeat): our check's point
(Poisson arrivals, timed from the schedule, with its early-stopping verdict) and LoadGen's Server
scenario (Poisson arrivals from its C++ scheduler, timed from its schedule; bench/md1.py's SUT
posting the stack's own request). Printed side by side: the two p99s, our verdict and interval,
LoadGen's VALID/INVALID against the same bound. The target: the planned rate meets the bound under
both, 20% above does not (or the plan says why it keeps more margin).
Needs `mlcommons-loadgen` (pip, the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from md1 import run_loadgen

from deploybench.hardware import detect_cpu
from deploybench.report import load_study, recommend_study, study_constraints
from deploybench.study.plan_check import judge, measure_rates, served, study_config, warm_up
from deploybench.study.runner import study_payloads
from deploybench.traffic.fleet import FleetSettings
from deploybench.traffic.profile import read_traffic

LOADGEN_SEED = 26


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("study", type=Path)
    parser.add_argument("--traffic", required=True)
    parser.add_argument("--p99-ms", type=float, required=True)
    parser.add_argument("--candidate", default=None, help="trial id (default: the recommended one)")
    parser.add_argument("--over", type=float, default=0.2)
    parser.add_argument("--loadgen-s", type=float, default=30.0, help="LoadGen's min duration per rate")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each rate, in turns")
    parser.add_argument("--loadgen-first", action="store_true", help="at each rate LoadGen, then ours")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args()


def _plan(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    study = load_study(args.study)
    constraints = study_constraints(study).model_copy(update={"p99_ms": args.p99_ms})
    study, rec = recommend_study(
        args.study, constraints, traffic=read_traffic(args.traffic), fleet=FleetSettings()
    )
    ev = (
        rec.winner
        if args.candidate is None
        else next(e for e in rec.evaluations if e.trial_id == args.candidate)
    )
    if ev is None or ev.traffic_plan is None:
        raise SystemExit(f"no plan to check: {rec.traffic_note}")
    return study, study.trials[ev.trial_index], ev.traffic_plan


def _loadgen_rows(server, config, rates, args, run: int = 1) -> list[dict[str, float]]:  # type: ignore[no-untyped-def]
    body, headers = server.stack.request(server, study_payloads(config)[0])
    rows = []
    for _, rate in rates:
        row, _ = run_loadgen(
            server.endpoint.url,
            body,
            rate,
            args.loadgen_s,
            LOADGEN_SEED + run - 1,
            headers=headers,
            bound_ms=args.p99_ms,
        )
        rows.append({**row, "run": run})
    return rows


def main() -> None:
    args = _args()
    study, trial, plan = _plan(args)
    config = study_config(study.config, study.root)
    rate = plan.rate_per_instance
    rates = [("planned", rate), (f"+{args.over:.0%}", rate * (1 + args.over))]
    print(f"{plan.label}: planned {rate:.1f} req/s per instance ({plan.basis}); bound p99 {args.p99_ms:g} ms")
    with (
        tempfile.TemporaryDirectory(prefix="traffic-check-") as workdir,
        served(config, trial, Path(workdir), args.cache_dir, print) as server,
    ):
        target = server.target(study_payloads(config), config.content_type)
        print(f"warmed with {warm_up(target, trial.candidate, threading.Event())} requests")
        ours, loadgen = [], []
        for run in range(1, args.repeat + 1):  # the rates take turns, as check-plan --repeat
            for rate in rates:  # paired per rate, seconds apart: the host's drift over minutes cancels
                if args.loadgen_first:
                    loadgen += _loadgen_rows(server, config, [rate], args, run)
                ours += measure_rates(
                    target, config, [rate], args.p99_ms, threading.Event(), repeats=1, first_run=run
                )
                if not args.loadgen_first:
                    loadgen += _loadgen_rows(server, config, [rate], args, run)
    outcome, summary = judge(plan, ours, args.over)
    print(f"machine: {detect_cpu().model_name}")
    header = ("point", "run", "req/s", "ours p99 ms (95% CI)", "verdict", "LoadGen p99 ms", "LoadGen")
    print("{:<8} {:>3} {:>7} {:>26} {:>9} {:>15} {:>8}".format(*header))
    for point, row in zip(ours, loadgen, strict=True):
        ci = f" ({point.p99_ci.low:.1f}-{point.p99_ci.high:.1f})" if point.p99_ci else ""
        valid = "VALID" if row["valid"] else "INVALID"
        print(
            f"{point.name:<8} {point.run:>3} {point.rate:>7.1f} {f'{point.p99_ms:.1f}{ci}':>26} "
            f"{point.verdict:>9} {row['p99_ms']:>15.1f} {valid:>8}"
        )
    print(f"{outcome}: {summary}")
    if args.json:
        data = {"outcome": outcome, "summary": summary, "ours": [p.model_dump(mode="json") for p in ours],
                "loadgen": loadgen, "plan": plan.model_dump(mode="json", exclude={"simulation"})}  # fmt: skip
        args.json.write_text(json.dumps(data, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
