"""The study's search against an exhaustive sweep of the same space, side by side in one run (not a test).

1. exhaustive: every candidate of the study's plan gets the full load plan (search off), bounded by
   --max-minutes (what was measured by then is compared, and the output says how much that was);
2. search: the same study with its successive halving on, reusing the exhaustive run's in-process
   variant evaluation (variants.json), so both search exactly the same candidate space.
Printed: the exhaustive best, the search's pick, and two ratios (target >= 0.95):
  like for like  the pick's throughput in the exhaustive sweep / the exhaustive best (same run, no drift);
  as claimed     the throughput the search claims for its pick / the exhaustive best.
Both rank by throughput (with one machine price, cost per 1M ranks the same way). Every phase shows the
share of the machine other processes took meanwhile (other engineers work on these machines). Run under
the CPU lock:

    flock /tmp/deploybench-cpu.lock .venv/bin/python bench/exhaustive.py --out /tmp/exh --max-minutes 25
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from deploybench.config import Constraints
from deploybench.recommend.rank import recommend
from deploybench.recommend.records import Evaluation
from deploybench.results import TrialRecord
from deploybench.study.runner import StudyProgress, run_study
from deploybench.study.spec import StudyConfig, load_study_config
from deploybench.study.store import ENVIRONMENT, VARIANTS, StudyStore


def _own_cpu_s() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _machine_busy_s() -> float:
    times = psutil.cpu_times()
    return times.user + times.system + getattr(times, "nice", 0.0) + getattr(times, "irq", 0.0)


def _progress() -> StudyProgress:
    def done(record: TrialRecord) -> None:
        peak = f"{record.peak.throughput_rps:.1f} req/s" if record.peak else (record.reason or "")
        print(f"  {record.status:>8}  {record.trial_id}  {peak}", flush=True)

    return StudyProgress(on_stage=lambda message: print(f"  {message}", flush=True), on_trial_done=done)


def run_phase(config: StudyConfig, root: Path, cache: Path, max_s: float | None) -> dict[str, Any]:
    """One study to the end (or to max_s: what finished is kept); wall time and others' CPU share."""
    stop = threading.Event()
    timer = threading.Timer(max_s, stop.set) if max_s else None
    if timer:
        timer.start()
    start, own, busy = time.monotonic(), _own_cpu_s(), _machine_busy_s()
    try:
        run_study(config, root, cache_dir=cache, progress=_progress(), stop=stop)
        finished = True
    except KeyboardInterrupt:
        finished = False
    finally:
        if timer:
            timer.cancel()
    wall = time.monotonic() - start
    others = max(_machine_busy_s() - busy - (_own_cpu_s() - own), 0.0)
    trials = [t for t in StudyStore(root).trials() if t.status != "probe"]
    share = 100 * others / (wall * (os.cpu_count() or 1))
    return {"wall_s": wall, "finished": finished, "trials": trials, "others_pct": share}


def best(trials: list[TrialRecord]) -> Evaluation | None:
    return recommend(trials, Constraints(objective="throughput")).winner


def _line(name: str, ev: Evaluation | None) -> str:
    if ev is None or ev.throughput_rps is None:
        return f"{name:<22} none"
    ci = f" ({ev.throughput_ci.low:.1f}-{ev.throughput_ci.high:.1f})" if ev.throughput_ci else ""
    return f"{name:<22} {ev.label:<48} {ev.throughput_rps:8.1f} req/s{ci}"


def compare(exhaustive: dict[str, Any], search: dict[str, Any], space: int) -> None:
    top, pick = best(exhaustive["trials"]), best(search["trials"])
    same = [t for t in exhaustive["trials"] if pick and t.trial_id == pick.trial_id]
    pick_there = best(same) if same else None
    measured = sum(1 for t in exhaustive["trials"] if t.status == "ok")
    print()
    for name, phase in (("exhaustive", exhaustive), ("search", search)):
        state = "finished" if phase["finished"] else "stopped at --max-minutes"
        print(
            f"{name:<11} {phase['wall_s'] / 60:5.1f} min, {state}; other processes {phase['others_pct']:.0f}%"
        )
    print(f"exhaustive measured {measured} of {space} candidates fully")
    print(_line("exhaustive best", top))
    print(_line("search pick", pick))
    print(_line("pick in exhaustive", pick_there))
    if top and top.throughput_rps:
        if pick_there and pick_there.throughput_rps:
            print(f"ratio like for like    {pick_there.throughput_rps / top.throughput_rps:.3f}")
        if pick and pick.throughput_rps:
            print(f"ratio as claimed       {pick.throughput_rps / top.throughput_rps:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", nargs="?", type=Path, help="study YAML (default: the default study)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/deploybench-exhaustive"))
    parser.add_argument("--max-minutes", type=float, default=30.0, help="bound on the exhaustive sweep")
    parser.add_argument("--price-per-hour", type=float, help="default: unpriced (ranked by throughput)")
    parser.add_argument("--backends", help="comma-separated: a smaller space (default: the study's)")
    args = parser.parse_args()
    machine = {"price_per_hour": args.price_per_hour} if args.price_per_hour else {"unpriced": True}
    overrides: dict[str, Any] = {"machine": machine}
    if args.backends:
        overrides["backends"] = args.backends.split(",")
    base = load_study_config(args.study, overrides)
    exhaustive_root, search_root, cache = args.out / "exhaustive", args.out / "search", args.out / "cache"
    shutil.rmtree(args.out, ignore_errors=True)
    print(
        f"{os.cpu_count()} cores; exhaustive sweep (at most {args.max_minutes:g} min), then the search",
        flush=True,
    )
    off = base.model_copy(update={"search": base.search.model_copy(update={"enabled": False})})
    exhaustive = run_phase(off, exhaustive_root, cache, args.max_minutes * 60)
    search_root.mkdir(parents=True)
    for name in (VARIANTS, ENVIRONMENT):  # the same in-process evaluation: the same candidate space
        shutil.copy(exhaustive_root / name, search_root / name)
    search = run_phase(base, search_root, cache, None)
    space = sum(1 for t in search["trials"] if t.status in ("ok", "failed") or "dropped" in (t.reason or ""))
    compare(exhaustive, search, space)


if __name__ == "__main__":
    main()
