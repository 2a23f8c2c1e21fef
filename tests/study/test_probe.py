"""The probe as paired runoffs, a p99 bound in every round, and lost measurements retried: over
made-up served measurements and a fake executor (no server needed)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from helpers.report_factory import histogram_stats
from helpers.search_jobs import served_job

from deploybench.results import LoadPoint, RunoffSample, TrialRecord
from deploybench.study.probe import group_size, probe_groups, probe_scores
from deploybench.study.rounds import Score, decide, missed_bound
from deploybench.study.runoff import RunoffPlan, warm_configs
from deploybench.study.search import SearchRun
from deploybench.study.spec import SearchSpec, StudyConfig
from deploybench.study.store import StudyStore
from deploybench.study.trial import TrialContext, TrialEvents, TrialJob, base_record, now


def job(workers: int = 1, batch: int = 1, threads: int = 1, backend: str = "onnxruntime") -> TrialJob:
    return served_job(backend, workers=workers, threads=threads, batch=batch)


def record(ctx: TrialContext, j: TrialJob, rps: list[float], group: str, **update: object) -> TrialRecord:
    sample = RunoffSample(group=group, concurrency=16, window_s=1.5, rps=rps)
    base = {**base_record(ctx, j, now()), "finished_at": now()}
    return TrialRecord(**{**base, "status": "ok", "runoff": sample, **update})  # type: ignore[arg-type]


def context(config: StudyConfig | None = None) -> TrialContext:
    return TrialContext(config or StudyConfig(), "random", [b"x"], None, threading.Event())


def test_the_probe_runs_in_groups_that_fit_each_with_the_same_reference_first() -> None:
    jobs = [job(1, 1, threads=t) for t in range(1, 11)]
    assert [[j.trial_id for j in g] for g in probe_groups(jobs[:8], 8)] == [
        [f"{j.trial_id}#probe" for j in jobs[:8]]
    ]
    groups = probe_groups(jobs, 4)
    assert len(groups) == 3 and all(len(g) <= 4 for g in groups)
    assert [g[0].trial_id for g in groups] == [
        f"{jobs[0].trial_id}#probe",
        f"{jobs[0].trial_id}#probe@2",
        f"{jobs[0].trial_id}#probe@3",
    ]
    members = [j.trial_id for g in groups for j in g[1:]]
    assert sorted(members) == sorted(f"{j.trial_id}#probe" for j in jobs[1:])  # each other one once
    spec = SearchSpec()
    assert group_size(spec, jobs, available_mb=64_000) == 8
    assert group_size(spec, [job(workers=2)], available_mb=4 * 1024) == 2  # 2 servers of 2 workers fit
    assert group_size(spec, [job(workers=1)], available_mb=5 * 1024) == 5


def test_groups_compare_through_their_reference_so_a_slower_hour_cuts_no_one() -> None:
    """Group 2 ran while the host was 30% slower: by raw throughput 'c' (1.2x the reference, side
    by side) would read 16.8 req/s, below group 1's 'a' (1.1x, 22 req/s) and cut; through the
    reference it leads."""
    ctx = context()
    ref, a, b, c, d = (job(1, 1, threads=t) for t in (1, 2, 3, 4, 5))
    groups = probe_groups([ref, a, b, c, d], 3)
    assert [[j.trial_id.split("#")[0] for j in g] for g in groups] == [
        [ref.trial_id, a.trial_id, b.trial_id],
        [ref.trial_id, c.trial_id, d.trial_id],
    ]
    drift = [20.0, 19.0, 21.0]
    ratios = {a.trial_id: 1.1, b.trial_id: 0.7, c.trial_id: 1.2, d.trial_id: 0.8, ref.trial_id: 1.0}
    known = {}
    for index, (group, slow) in enumerate(zip(groups, (1.0, 0.7), strict=True)):
        for member in group:
            noise = [1.0, 1.01, 0.99]
            rps = [
                r * slow * ratios[member.trial_id.split("#")[0]] * n
                for r, n in zip(drift, noise, strict=True)
            ]
            known[member.trial_id] = record(ctx, member, rps, f"probe group {index + 1}")
    scores = {s.trial_id: s for s in probe_scores(groups, known, None)}
    assert scores[c.trial_id].rps > scores[a.trial_id].rps > scores[ref.trial_id].rps
    outcome = decide(list(scores.values()), keep=2, max_tied=0, label="probe", round_no=1, cutoff=True)
    assert outcome.kept == [c.trial_id, a.trial_id]
    assert set(outcome.dropped) == {ref.trial_id, b.trial_id, d.trial_id}


def _point(latency_ms: float, count: int, concurrency: int = 2) -> LoadPoint:
    stats, encoded = histogram_stats(np.full(count, latency_ms))
    return LoadPoint(
        mode="closed",
        concurrency=concurrency,
        duration_s=1.5,
        ok=count,
        throughput_rps=count / 1.5,
        latency=stats,
        stable=True,
        windows=1,
        histogram=encoded,
    )


def test_with_a_p99_bound_a_round_ranks_by_throughput_within_it() -> None:
    """'fast' saturates higher but its windows, pooled, clearly miss the 50 ms bound; 'lean' is slower
    and within it: lean ranks first, and fast is dropped with the reason. Short windows that cannot show
    'met' (too few requests) do not demote: only a clear miss does."""
    missed = missed_bound([_point(80.0, 300), _point(80.0, 300)], 50.0)
    assert missed is not None and "p99 clearly above the 50 ms bound at concurrency 2" in missed
    assert missed_bound([_point(30.0, 60)], 50.0) is None and missed_bound([_point(80.0, 300)], None) is None
    scores = [Score("fast", 40.0, missed=missed), Score("lean", 30.0), Score("slow", 20.0)]
    outcome = decide(scores, keep=2, max_tied=0, label="probe", round_no=1)
    assert outcome.kept == ["lean", "slow"]
    assert (
        "40.0 req/s" in outcome.dropped["fast"]
        and "p99 clearly above the 50 ms bound" in outcome.dropped["fast"]
    )


def test_every_batch_size_is_warmed_and_a_p99_bound_visits_each_at_its_knee() -> None:
    configs = warm_configs(job(workers=2, batch=4))
    assert [(c.concurrency, c.max_requests) for c in configs] == [(2, 4), (4, 8), (6, 12), (8, 16)]
    plan = RunoffPlan(16, 1.5, 0.2, 3, at_knee=True)
    assert (plan.level(job(1, 1)), plan.level(job(2, 4)), plan.level(job(2, 8))) == (2, 16, 16)
    assert RunoffPlan(16, 1.5, 0.2, 3).level(job(1, 1)) == 16


@dataclass
class FakeExecutor:
    """Serves nothing: each runoff's records from `rps` (per candidate key), the first probe of
    `lost_once` lost to the infrastructure, `broken` failing by its own doing."""

    rps: dict[str, float]
    lost_once: set[str] = field(default_factory=set)
    broken: set[str] = field(default_factory=set)
    runoffs: list[tuple[list[str], RunoffPlan]] = field(default_factory=list)
    runs_runoffs: bool = True

    def run_runoff(self, ctx, jobs, plan, store, events):  # type: ignore[no-untyped-def]
        self.runoffs.append(([j.trial_id for j in jobs], plan))
        records = []
        for j in jobs:
            key = j.trial.candidate.key
            if key in self.lost_once:
                self.lost_once.discard(key)
                why = "lost to the infrastructure: its server was killed by SIGKILL during the runoff"
                records.append(
                    record(ctx, j, [], plan.label, status="failed", runoff=None, reason=why, retryable=True)
                )
            elif key in self.broken:
                why = "server process exited with code 1 during the runoff"
                records.append(record(ctx, j, [], plan.label, status="failed", runoff=None, reason=why))
            else:
                records.append(
                    record(
                        ctx,
                        j,
                        [self.rps[key] * d for d in (1.0, 0.97, 1.02)],
                        f"{plan.label} {len(self.runoffs)}",
                    )
                )
        return records


def test_the_probe_is_a_paired_runoff_and_a_lost_probe_is_retried_never_dropping_its_candidate(
    tmp_path: Path,
) -> None:
    jobs = [
        job(1, 1, threads=2),
        job(2, 1),
        job(1, 4, threads=2),
        job(2, 4),
        job(1, 1, threads=1),
        job(1, 4, threads=1),
    ]
    keys = [j.trial.candidate.key for j in jobs]
    rps = dict(zip(keys, (30.0, 28.0, 35.0, 20.0, 18.0, 25.0), strict=True))
    executor = FakeExecutor(rps, lost_once={keys[2]}, broken={keys[4]})
    store = StudyStore(tmp_path)
    kept: list[TrialRecord] = []
    events = TrialEvents(lambda j, node: None, lambda update: None, lambda line: None)
    run = SearchRun(executor, context(), store, events, kept.append)  # type: ignore[arg-type]
    finalists, counts = run.search(jobs)
    probes = [(ids, plan) for ids, plan in executor.runoffs if plan.label == "probe"]
    assert len(probes) == 2 and len(probes[0][0]) == 6  # every candidate at once, then the lost run again
    assert all(plan.warm_batches and plan.rounds == 3 and plan.window_s == 1.5 for _, plan in probes)
    assert keys[2] in {f.trial.candidate.key for f in finalists}  # the lost probe, retried, wins
    dropped = {r.candidate.key: r for r in kept}
    assert keys[2] not in dropped
    assert dropped[keys[4]].status == "failed" and "exited with code 1" in (dropped[keys[4]].reason or "")
    assert counts["probed"] == 6
