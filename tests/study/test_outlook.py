"""The budget's outlook: an unmeasured candidate is predicted from its nearest measured neighbours of
its own backend and stack, and the summary says how much better the best of them might be."""

from __future__ import annotations

from helpers.search_jobs import MACHINE

from deploybench.results import Candidate, Interval
from deploybench.study.outlook import knob_distance, outlook, outlook_words, predict
from deploybench.study.plan import PlannedTrial
from deploybench.study.rounds import Score
from deploybench.study.trial import TrialJob


def job(backend: str = "openvino", workers: int = 1, batch: int = 1, stack: str = "deploybench") -> TrialJob:
    candidate = Candidate(backend=backend, stack=stack, workers=workers, threads=2, max_batch_size=batch)
    return TrialJob(candidate.key, PlannedTrial(candidate, "serve"), MACHINE)


def score(of: TrialJob, rps: float, high: float | None = None) -> Score:
    ci = None if high is None else Interval(low=2 * rps - high, high=high, method="test")
    return Score(of.trial_id, rps, ci)


def test_neighbours_share_backend_stack_and_device_and_are_counted_by_differing_knobs() -> None:
    assert knob_distance(job(batch=1).trial.candidate, job(batch=4).trial.candidate) == 1
    assert knob_distance(job(batch=1).trial.candidate, job(workers=2, batch=4).trial.candidate) == 2
    assert knob_distance(job().trial.candidate, job(backend="onnxruntime").trial.candidate) is None
    assert knob_distance(job().trial.candidate, job(stack="rayserve").trial.candidate) is None


def test_an_unmeasured_candidate_is_predicted_from_its_nearest_neighbours_upper_ends() -> None:
    near, far, other = job(batch=1), job(workers=2, batch=8), job(backend="onnxruntime", batch=4)
    measured = [
        (near, score(near, 100.0, 110.0)),
        (far, score(far, 300.0, 320.0)),
        (other, score(other, 500.0)),
    ]
    predicted = predict(job(batch=4), measured)
    assert predicted == (110.0, (near.trial_id,))  # the far one and another backend do not count


def test_the_words_say_how_much_better_the_best_unmeasured_might_be() -> None:
    best, weak = job(backend="onnxruntime", batch=4), job(batch=1)
    measured = [(best, score(best, 200.0, 210.0)), (weak, score(weak, 100.0, 150.0))]
    found = outlook([job(backend="onnxruntime", batch=8), job(batch=4)], measured)
    assert found is not None
    assert found.trial_id == job(backend="onnxruntime", batch=8).trial_id
    assert round(found.percent_better) == 5
    assert "predicted at most 5% better than the best probed" in outlook_words(found)
    behind = outlook([job(batch=4)], measured)
    assert behind is not None and "predicted 25% below it" in outlook_words(behind)
    assert outlook_words(outlook([], measured)) == ""
