"""Every stack planned over the study's knob grid as far as it can express it, deploybench's server at
each of those knob settings, and a combination a stack cannot express recorded once, never served."""

from __future__ import annotations

from deploybench.config import RuntimeKnobs
from deploybench.results import Candidate
from deploybench.stacks import get_stack
from deploybench.stacks.base import CANONICAL_KNOBS
from deploybench.stacks.litserve import LitServeStack
from deploybench.study.plan import StackOffer, VariantSummary, plan_trials
from deploybench.study.spec import KnobGrid, StudyConfig

ONNX = VariantSummary(
    "onnxruntime", "passed", precision="fp32", images_per_s={1: 25.0}, knobs=frozenset({"streams"})
)
EAGER = VariantSummary("eager", "passed", precision="fp32", images_per_s={1: 10.0})
GRID = KnobGrid(workers=[1, 2], max_batch_size=[1, 4], max_delay_ms=[0.5, 2.0], streams=[1, 2])
# (workers, max batch, threads, delay ms) besides the default (1, 1, 4, 0): workers x threads <= 4 cores
GRID_KNOBS = {(1, 4, 4, 0.5), (1, 4, 4, 2.0), (2, 1, 2, 0.0), (2, 4, 2, 0.5), (2, 4, 2, 2.0)}


def plan(stack: str) -> list:  # type: ignore[type-arg]
    offers = [StackOffer("deploybench"), StackOffer(stack, backends=get_stack(stack).backends)]
    return plan_trials(StudyConfig(knobs=GRID), [EAGER, ONNX], cores=4, stacks=offers)


def served(trials: list, stack: str) -> list[Candidate]:  # type: ignore[type-arg]
    return [t.candidate for t in trials if t.action == "serve" and t.candidate.stack == stack]


def test_pytriton_and_litserve_get_the_whole_grid_their_default_knobs_first() -> None:
    for stack in ("pytriton", "litserve"):
        mine = served(plan(stack), stack)
        assert (mine[0].workers, mine[0].threads, mine[0].max_batch_size) == (1, 4, 1)  # as it ships
        assert {(c.workers, c.max_batch_size, c.threads, c.max_delay_ms) for c in mine[1:]} == GRID_KNOBS
        assert all(c.runtime == RuntimeKnobs() for c in mine)  # runtime knobs are deploybench's own


def test_torchserve_gets_the_grid_it_can_express_and_says_once_why_not_the_rest() -> None:
    trials = plan("torchserve")
    mine = served(trials, "torchserve")
    assert {c.max_delay_ms for c in mine if c.max_batch_size > 1} == {2.0}  # whole ms only
    assert len(mine) == 4  # default, w1 b4 2 ms, w2 b1, w2 b4 2 ms
    skipped = [t for t in trials if t.candidate.stack == "torchserve" and t.action == "skipped"]
    assert len(skipped) == 1 and "steps of 1 ms" in (skipped[0].reason or "")
    assert "2 of the knob grid's combinations" in (skipped[0].reason or "")


def test_deploybench_is_planned_at_every_knob_setting_another_stack_is_served_at() -> None:
    for stack in ("torchserve", "pytriton", "litserve"):
        trials = plan(stack)
        mine = {t.candidate.key for t in trials if t.action == "serve"}
        for c in served(trials, stack):
            assert c.model_copy(update={"stack": "deploybench"}).key in mine
        assert len(mine) == len({t.candidate.key for t in trials if t.action == "serve"})


def test_the_default_study_plans_deploybench_alone() -> None:
    trials = plan_trials(StudyConfig(), [EAGER, ONNX], cores=4)
    assert {t.candidate.stack for t in trials} == {"deploybench"}


def test_a_stack_without_a_knob_is_given_no_combination_that_moves_it() -> None:
    class NoBatching(LitServeStack):
        knobs = CANONICAL_KNOBS - {"max_batch_size", "max_delay_ms"}

    default = Candidate(backend="onnxruntime", stack="litserve", workers=1, threads=4)
    batched = default.model_copy(update={"max_batch_size": 4, "max_delay_ms": 2.0})
    assert NoBatching().cannot_express(batched, default) == "litserve has no max_batch_size setting"
    assert NoBatching().cannot_express(default.model_copy(update={"workers": 2}), default) is None
    assert (
        get_stack("litserve").cannot_express(batched.model_copy(update={"max_delay_ms": 0.25}), default)
        is None
    )
    assert "steps of 1 ms" in (
        get_stack("torchserve").cannot_express(batched.model_copy(update={"max_delay_ms": 2.5}), default)
        or ""
    )
