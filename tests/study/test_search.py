"""Successive halving's decisions, over made-up served measurements (no server needed)."""

from __future__ import annotations

import threading
from dataclasses import replace

from helpers.search_jobs import served_job

from deploybench.config import RuntimeKnobs
from deploybench.results import Interval
from deploybench.study.protect import is_protected
from deploybench.study.round_plans import final_groups, probe_concurrency
from deploybench.study.rounds import Score, decide, round_sizes
from deploybench.study.spec import SearchSpec, StudyConfig
from deploybench.study.trial import TrialContext, TrialJob


def score(name: str, rps: float | None, half_width: float = 2.0) -> Score:
    if rps is None:
        return Score(name, None, failure="failed: probe: deploybench did not start: boom")
    return Score(name, rps, Interval(low=rps - half_width, high=rps + half_width, method="made up"))


def job(
    backend: str, workers: int = 1, batch: int = 1, stack: str = "deploybench", **knobs: object
) -> TrialJob:
    return served_job(
        backend, stack=stack, workers=workers, batch=batch, delay_ms=0.0, runtime=RuntimeKnobs(**knobs)
    )  # type: ignore[arg-type]


def test_round_sizes_keep_a_third_then_a_third_of_that_bounded_by_the_settings() -> None:
    spec = SearchSpec()
    assert round_sizes(16, spec) == (6, 2)
    assert round_sizes(20, spec) == (7, 2)
    assert round_sizes(4, spec) == (3, 1)  # at least 3 run longer
    assert round_sizes(40, spec) == (7, 2)  # at most one runoff of servers beside eager; 2 finalists
    assert round_sizes(40, spec.model_copy(update={"finalists": 3})) == (7, 3)
    assert round_sizes(40, spec.model_copy(update={"probe_servers": 16})) == (14, 2)
    assert round_sizes(2, spec) == (2, 1)


def test_the_best_survive_and_each_dropped_one_says_why_with_numbers() -> None:
    scores = [score("a", 96.1), score("b", 134.0), score("c", 120.0), score("d", 50.0)]
    outcome = decide(scores, keep=2, max_tied=0, label="probe", round_no=1)
    assert outcome.kept == ["b", "c"]
    assert (
        outcome.dropped["a"]
        == "dropped after probe: 96.1 req/s, 28% below the best 134.0 req/s (round 1 of 3)"
    )
    assert outcome.dropped["d"].startswith("dropped after probe: 50.0 req/s, 63% below")
    assert set(outcome.kept) | set(outcome.dropped) == {"a", "b", "c", "d"}


def test_candidates_tied_with_the_best_are_kept_up_to_the_limit() -> None:
    scores = [score("best", 180.0, 5.0), score("next", 170.0, 5.0), score("tied", 176.0, 3.0)]
    scores += [score("also-tied", 172.0, 4.0), score("far", 150.0, 5.0)]
    outcome = decide(scores, keep=1, max_tied=2, label="the longer run", round_no=2)
    assert outcome.kept == ["best", "tied", "also-tied"]  # 170 +- 5 overlaps too, but the limit is 2
    assert outcome.tied == ["tied", "also-tied"]
    assert "far" in outcome.dropped and "next" in outcome.dropped
    no_ties = decide(scores, keep=1, max_tied=0, label="the longer run", round_no=2)
    assert no_ties.kept == ["best"] and no_ties.tied == []


def test_a_failed_probe_is_dropped_with_its_failure_and_never_ranked() -> None:
    outcome = decide(
        [score("ok", 100.0), score("broken", None)], keep=2, max_tied=0, label="probe", round_no=1
    )
    assert outcome.kept == ["ok"]
    assert outcome.dropped["broken"] == "failed: probe: deploybench did not start: boom (round 1 of 3)"


def test_the_decision_does_not_depend_on_the_order_measured() -> None:
    scores = [score("x", 100.0), score("y", 100.0), score("z", 90.0)]
    assert decide(scores, 1, 0, "probe", 1).kept == decide(scores[::-1], 1, 0, "probe", 1).kept == ["x"]


def test_eager_at_default_knobs_and_other_stacks_always_reach_the_final() -> None:
    assert is_protected(job("eager"))
    assert is_protected(job("openvino-int8", stack="torchserve"))
    assert not is_protected(job("eager", workers=2))
    assert not is_protected(job("eager", batch=4))
    assert not is_protected(job("eager", overlap=True))
    assert not is_protected(job("openvino-int8"))


def test_deploybench_at_another_stacks_knobs_is_always_measured_beside_it() -> None:
    torchserve = job("openvino-int8", stack="torchserve")
    twin, other = job("openvino-int8"), job("openvino-int8", workers=2)
    jobs = [torchserve, twin, other]
    assert is_protected(twin, jobs)  # the side-by-side at identical knobs never vanishes
    assert not is_protected(other, jobs)
    assert not is_protected(twin, [twin, other])  # no other stack: an ordinary contender


def test_probe_concurrency_is_where_every_candidate_can_peak() -> None:
    config = StudyConfig()
    assert probe_concurrency(config, [job("eager"), job("onnxruntime", workers=2, batch=4)]) == 16
    assert probe_concurrency(config, [job("onnxruntime", workers=2, batch=8)]) == 32  # 2 batches per worker
    tiny = StudyConfig.model_validate({"load": {"include_concurrency": [4]}})
    assert probe_concurrency(tiny, [job("eager")]) == 4


def test_the_baseline_is_measured_at_the_fixed_levels_and_finalists_get_the_full_plan() -> None:
    ctx = TrialContext(StudyConfig(), "random", [b"x"], None, threading.Event())
    groups = final_groups(ctx, [job("eager"), job("onnxruntime", workers=2), job("eager", workers=2)])
    (base_ctx, baseline), (full_ctx, others) = groups
    assert [j.trial_id for j in baseline] == [job("eager").trial_id]
    assert len(others) == 2 and full_ctx is ctx  # eager at other knobs won through the search: full plan
    plan = base_ctx.config.load
    assert (plan.concurrency_levels, plan.include_concurrency, plan.rate_search) == ([16], [], False)
    sweep = ctx.config.model_copy(update={"search": SearchSpec(baseline_sweep=True)})
    assert final_groups(replace(ctx, config=sweep), baseline) == [(replace(ctx, config=sweep), baseline)]
    assert final_groups(ctx, []) == []
    no_fixed = ctx.config.model_copy(
        update={"load": ctx.config.load.model_copy(update={"include_concurrency": []})}
    )
    assert final_groups(replace(ctx, config=no_fixed), baseline) == [
        (replace(ctx, config=no_fixed), baseline)
    ]


def test_a_runoff_keeps_a_candidate_the_paired_rounds_cannot_tell_from_the_best() -> None:
    """Round 2 as a runoff: 'b' trails by 3% in every round but one, where it leads: the paired
    interval reaches 1, so b is kept as tied; 'c' trails by 10% in every round: dropped."""
    from deploybench.results import RunoffSample

    def runoff(name: str, rps: list[float]) -> Score:
        sample = RunoffSample(group="round 2 at t", concurrency=16, window_s=3.0, rps=rps)
        return Score(name, sum(rps) / len(rps), runoff=sample)

    drift = [36.0, 33.0, 31.0, 35.0]
    scores = [
        runoff("a", drift),
        runoff("b", [36.0 * 0.97, 33.0 * 1.02, 31.0 * 0.97, 35.0 * 0.97]),
        runoff("c", [r * 0.90 for r in drift]),
    ]
    outcome = decide(scores, keep=1, max_tied=2, label="the longer run", round_no=2)
    assert outcome.kept == ["a", "b"] and outcome.tied == ["b"]
    assert "c" in outcome.dropped


def test_the_probe_keeps_one_it_cannot_tell_from_the_last_one_kept() -> None:
    """28.6 vs the 4th's 28.8 is within the noise of that cut, though far below the best 34.4."""
    rps = {"a": 34.4, "b": 30.3, "c": 29.8, "d": 28.8, "e": 28.6, "f": 16.0}
    scores = [score(name, value, half_width=1.0) for name, value in rps.items()]
    outcome = decide(scores, keep=4, max_tied=1, label="probe", round_no=1, cutoff=True)
    assert outcome.kept == ["a", "b", "c", "d", "e"] and outcome.tied == ["e"]
    assert decide(scores, keep=4, max_tied=1, label="probe", round_no=1).tied == []  # vs the best: no
