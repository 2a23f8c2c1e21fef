"""Were two runs of a study's pick the same deployment, or statistically tied? (not a test)

Each study folder's recommended candidate is served again, all of them at once, and measured the way
search round 2 measures (study/runoff.py): one window each per round, in turn, the order reversed
every round, so the host's drift cancels in their ratios. Printed: each pick's throughput over the
best one's, round by round, its paired 95% interval (deploybench.recommend.ties.paired_ratio) and the verdict
the recommendation itself would give: tied when the interval reaches 1 and the estimate is within
the 5% tie margin. Run under the CPU lock, after the studies (they share the artifact cache):

    flock /tmp/deploybench-cpu.lock .venv/bin/python bench/picks_runoff.py /tmp/defaultK /tmp/defaultL

With --space, every candidate the first study searched (its probes and finalists) is served too: an
exhaustive sweep of that space at one concurrency, side by side, so the picks' ratios to its best
are free of the drift a one-after-another sweep (bench/exhaustive.py) measures through.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from deploybench.inputs.payload import default_payload_path, read_payloads
from deploybench.recommend.rank import recommend
from deploybench.recommend.ties import geometric_mean, paired_ratio
from deploybench.results import TrialRecord
from deploybench.study.plan import PlannedTrial
from deploybench.study.runoff import RunoffPlan, run_runoff
from deploybench.study.spec import StudyConfig, load_study_config
from deploybench.study.store import CONFIG, StudyStore
from deploybench.study.trial import TrialContext, TrialEvents, TrialJob


def study_pick(folder: Path) -> tuple[StudyConfig, TrialRecord]:
    """The study's config and the trial record of the candidate it recommends."""
    config = load_study_config(folder / CONFIG)
    trials = StudyStore(folder).trials()
    winner = recommend(trials, config.constraints).winner
    if winner is None:
        raise SystemExit(f"{folder}: the study recommends nothing")
    return config, next(t for t in trials if t.trial_id == winner.trial_id)


def _job(record: TrialRecord) -> TrialJob:
    trial = PlannedTrial(record.candidate, "serve", precision=record.precision)
    return TrialJob(record.candidate.key, trial, record.machine, record.parity, record.accuracy)


def space_jobs(folder: Path) -> list[TrialJob]:
    """Every candidate the study searched or fully measured (deploybench's server), once each."""
    searched = [t for t in StudyStore(folder).trials() if t.trial_id.endswith("#probe") or t.status == "ok"]
    return list({t.candidate.key: _job(t) for t in searched if t.candidate.stack == "deploybench"}.values())


def picks_jobs(folders: list[Path]) -> tuple[StudyConfig, str, list[TrialJob], dict[str, list[str]]]:
    """One job per distinct pick (by candidate key), and which folders picked it."""
    jobs: dict[str, TrialJob] = {}
    picked_by: dict[str, list[str]] = {}
    config, weights = None, "random"
    for folder in folders:
        study_config, record = study_pick(folder)
        config, weights = config or study_config, record.weights
        key = record.candidate.key
        picked_by.setdefault(key, []).append(folder.name)
        jobs.setdefault(key, _job(record))
    assert config is not None
    return config, weights, list(jobs.values()), picked_by


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("/tmp/picks-runoff"))
    parser.add_argument("--space", action="store_true", help="serve the first study's whole space too")
    args = parser.parse_args()
    config, weights, jobs, picked_by = picks_jobs(args.studies)
    if args.space:
        known = {job.trial_id for job in jobs}
        jobs += [job for job in space_jobs(args.studies[0]) if job.trial_id not in known]
    if len(jobs) < 2:
        who = ", ".join(picked_by[jobs[0].trial_id])
        print(f"every study picked the same configuration: {jobs[0].trial_id} ({who})")
        return
    payloads = read_payloads(config.payload or default_payload_path(), config.content_type)
    ctx = TrialContext(config, weights, payloads, args.cache_dir, threading.Event())
    args.out.mkdir(parents=True, exist_ok=True)
    events = TrialEvents(
        lambda job, node: None, lambda update: None, lambda message: print(message, flush=True)
    )
    plan = RunoffPlan(args.concurrency, args.window, args.warmup, args.rounds)
    records = run_runoff(ctx, jobs, plan, StudyStore(args.out), events)
    report(records, picked_by)


def report(records: list[TrialRecord], picked_by: dict[str, list[str]]) -> None:
    failed = [r for r in records if r.runoff is None]
    for record in failed:
        print(f"{record.trial_id}: {record.reason}")
    measured = sorted((r for r in records if r.runoff), key=lambda r: -geometric_mean(r.runoff.rps))
    if not measured:
        return
    best = measured[0]
    sample = best.runoff
    where = f"{len(sample.rps)} rounds of {sample.window_s:g} s at c{sample.concurrency}"
    print(f"\npicks side by side ({where}):")
    for record in measured:
        rounds = ", ".join(f"{rps:.1f}" for rps in record.runoff.rps)
        line = f"  {record.trial_id:<40} {geometric_mean(record.runoff.rps):6.1f} req/s ({rounds})"
        pair = paired_ratio(best.runoff, record.runoff) if record is not best else None
        if pair is not None:
            tied = pair.indistinguishable and pair.within_margin
            verdict = "tied with the best" if tied else "not tied"
            line += f"  {pair.ratio:.3f}x ({pair.low:.3f}-{pair.high:.3f}): {verdict}"
        who = ", ".join(picked_by.get(record.trial_id, [])) or "none: in the space"
        print(f"{line}  [picked by {who}]")


if __name__ == "__main__":
    main()
