"""Every stack searched over its own grid, each one's default knobs protected, and deploybench's server
measured at every other-stack finalist's very knobs: over made-up measurements (no server needed)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from helpers.search_jobs import served_job

from deploybench.results import RunoffSample, TrialRecord
from deploybench.study.protect import is_protected, protected_jobs, twins_to_add
from deploybench.study.runoff import RunoffPlan
from deploybench.study.search import SearchRun
from deploybench.study.spec import StudyConfig
from deploybench.study.store import StudyStore
from deploybench.study.trial import TrialContext, TrialEvents, TrialJob, base_record, now


def job(stack: str, workers: int = 1, batch: int = 1, backend: str = "onnxruntime") -> TrialJob:
    return served_job(backend, stack=stack, workers=workers, batch=batch)


@dataclass
class FakeExecutor:
    """Serves nothing: every runoff's records from `rps` (per candidate key)."""

    rps: dict[str, float]
    runoffs: list[list[str]] = field(default_factory=list)
    runs_runoffs: bool = True

    def run_runoff(self, ctx, jobs, plan: RunoffPlan, store, events):  # type: ignore[no-untyped-def]
        self.runoffs.append([j.trial.candidate.key for j in jobs])
        records = []
        for j in jobs:
            rps = [self.rps[j.trial.candidate.key] * d for d in (1.0, 0.97, 1.02)]
            sample = RunoffSample(
                group=f"{plan.label} {len(self.runoffs)}", concurrency=16, window_s=1.5, rps=rps
            )
            base = {**base_record(ctx, j, now()), "finished_at": now()}
            records.append(TrialRecord(**{**base, "status": "ok", "runoff": sample}))  # type: ignore[arg-type]
        return records


GRID = [(1, 1), (1, 4), (1, 8), (2, 1), (2, 4), (2, 8)]  # (workers, batch); (1, 1) is the default knobs


def space() -> list[TrialJob]:
    """Plan order: the baseline, deploybench's grid, then torchserve's default first and its grid."""
    return [job("deploybench", backend="eager")] + [
        job(stack, w, b) for stack in ("deploybench", "torchserve") for w, b in GRID
    ]


def test_each_other_stacks_default_knobs_stay_protected_and_its_grid_is_searched() -> None:
    jobs = space()
    protected = {j.trial.candidate.key for j in jobs if is_protected(j, jobs)}
    assert protected == {
        "eager@cpu/w1t2/b1d0",
        "torchserve:onnxruntime@cpu/w1t2/b1d0",  # torchserve as it ships
        "onnxruntime@cpu/w1t2/b1d0",  # deploybench at those very knobs
    }
    assert protected_jobs(jobs) == [j for j in jobs if is_protected(j, jobs)]  # the search's one pass


def test_another_stacks_finalist_brings_deploybench_at_its_knobs_into_the_final(tmp_path: Path) -> None:
    jobs = space()
    rps = {j.trial.candidate.key: 50.0 for j in jobs}
    # deploybench is best batching on one worker; torchserve on two workers, where deploybench is slowest
    rps.update({"onnxruntime@cpu/w1t2/b8d2": 120.0, "onnxruntime@cpu/w2t1/b8d2": 20.0})
    rps.update({"torchserve:onnxruntime@cpu/w2t1/b8d2": 90.0, "torchserve:onnxruntime@cpu/w1t2/b8d2": 30.0})
    executor = FakeExecutor(rps)
    kept: list[TrialRecord] = []
    ctx = TrialContext(StudyConfig(), "random", [b"x"], None, threading.Event())
    events = TrialEvents(lambda j, node: None, lambda update: None, lambda line: None)
    run = SearchRun(executor, ctx, StudyStore(tmp_path), events, kept.append)  # type: ignore[arg-type]
    finalists, counts = run.search(jobs)
    final = {f.trial.candidate.key for f in finalists}
    assert "torchserve:onnxruntime@cpu/w2t1/b8d2" in final  # torchserve's best, found among its own
    assert "onnxruntime@cpu/w1t2/b8d2" in final  # deploybench's best
    twin = "onnxruntime@cpu/w2t1/b8d2"  # dropped by deploybench's own rounds, back for the comparison
    assert twin in final and "knobs of torchserve's finalist" in counts["finalists"][twin]
    assert twin not in {r.candidate.key for r in kept}  # never recorded as dropped
    dropped = {r.candidate.key: r.reason or "" for r in kept}
    assert "dropped after" in dropped["torchserve:onnxruntime@cpu/w1t2/b8d2"]  # searched, not protected
    # each stack's probe among its own candidates: a pooled search would hand deploybench every place
    for keys in executor.runoffs:
        assert len({k.split(":")[0] if ":" in k else "deploybench" for k in keys if "eager" not in k}) == 1
    for f in finalists:
        if f.trial.candidate.stack == "torchserve":
            assert f.trial.candidate.model_copy(update={"stack": "deploybench"}).key in final


def test_a_twin_already_in_the_final_or_missing_from_the_space_is_not_added() -> None:
    jobs = space()
    ids = {j.trial.candidate.key: j.trial_id for j in jobs}
    ts_best, db_same = ids["torchserve:onnxruntime@cpu/w2t1/b4d2"], ids["onnxruntime@cpu/w2t1/b4d2"]
    assert twins_to_add(jobs, [ts_best]) == {
        db_same: "deploybench's server at the knobs of torchserve's finalist"
    }
    assert twins_to_add(jobs, [ts_best, db_same]) == {}
    only_torchserve = [j for j in jobs if j.trial.candidate.stack == "torchserve"]
    assert twins_to_add(only_torchserve, [ts_best]) == {}
