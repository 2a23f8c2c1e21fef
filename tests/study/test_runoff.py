"""Search round 2's paired runoff: every contender served at once, visited in turn, on real servers."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from helpers import TESTS, TINY
from helpers.search_jobs import served_job

from deploybench.config import ModelSpec
from deploybench.inputs.payload import default_payload_path
from deploybench.load.noise import load_noise
from deploybench.study.runner import record_runoff_drift
from deploybench.study.runoff import RunoffPlan, run_runoff, visit_config, visit_order
from deploybench.study.spec import StudyConfig
from deploybench.study.store import StudyStore
from deploybench.study.trial import TrialContext, TrialEvents, TrialJob


def test_each_round_reverses_the_order_so_no_contender_is_always_first() -> None:
    assert [visit_order(3, r) for r in range(4)] == [[0, 1, 2], [2, 1, 0], [0, 1, 2], [2, 1, 0]]
    cfg = visit_config(RunoffPlan(concurrency=16, window_s=3.0, warmup_s=0.5, rounds=4))
    assert (cfg.concurrency, cfg.max_windows, cfg.window_s, cfg.warmup_s) == (16, 1, 3.0, 0.5)
    assert cfg.duration_s == pytest.approx(3.5)
    longer = RunoffPlan(concurrency=16, window_s=3.0, warmup_s=0.5, rounds=4, first_warmup_s=2.0)
    first = visit_config(longer, first=True)  # a fresh server's first batches are slow
    assert (first.warmup_s, first.duration_s, visit_config(longer).warmup_s) == (2.0, 5.0, 0.5)


def _job(backend: str, batch: int = 1) -> TrialJob:
    return served_job(backend, threads=1, batch=batch)


@pytest.mark.slow
def test_a_runoff_measures_every_round_and_a_server_that_cannot_start_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    config = StudyConfig(model=ModelSpec(source=TINY, weights="random"))
    (tmp_path / "study").mkdir()
    store = StudyStore(tmp_path / "study")
    ctx = TrialContext(config, "random", [default_payload_path().read_bytes()], tmp_path, threading.Event())
    stages: list[str] = []
    events = TrialEvents(lambda job, node: None, lambda update: None, stages.append)
    jobs = [_job("eager"), _job("eager", batch=2), _job("tensorrt")]  # no CUDA here: it cannot start
    plan = RunoffPlan(concurrency=4, window_s=0.4, warmup_s=0.1, rounds=3)
    first, second, failed = run_runoff(ctx, jobs, plan, store, events)
    for record in (first, second):
        assert record.status == "ok" and record.runoff is not None, record.reason
        assert len(record.runoff.rps) == 3 and min(record.runoff.rps) > 0 and len(record.points) == 3
        assert {point.concurrency for point in record.points} == {4}
    assert first.runoff.group == second.runoff.group and "round 2 on ci" in first.runoff.group
    assert failed.status == "failed" and "did not start" in (failed.reason or "") and failed.runoff is None
    assert sum("runoff round" in line for line in stages) == 3
    # the runoff's rounds are this machine's drift: the study adds them to its between-run record
    assert load_noise() is None
    record_runoff_drift([first, second, failed])
    noise = load_noise()
    assert noise is not None and noise.throughput is not None and noise.p99 is None
    assert noise.throughput.df == 2 + 2 and "round 2's paired runoff, 2 servers" in noise.sources[0].by
