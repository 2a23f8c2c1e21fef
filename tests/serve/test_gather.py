"""The network calls of a batch's requests meet in one predict, whatever each handler does."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from deploybench.serve.gather import CallGatherer, gathered_pool, run_in_threads


class Counting:
    def __init__(self, fail: bool = False) -> None:
        self.sizes: list[int] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.sizes.append(len(batch))
        if self.fail:
            raise RuntimeError("variant broke")
        return batch.sum(axis=(1, 2, 3), keepdims=False)[:, None] * np.ones((1, 2))


def _image(value: float, rows: int = 1) -> np.ndarray:
    return np.full((rows, 1, 2, 2), value, np.float32)


def test_each_request_gets_its_own_rows_from_one_predict() -> None:
    predict = Counting()
    gatherer = CallGatherer(predict, 64)
    answers = run_in_threads(
        gatherer, gathered_pool(4), lambda v: gatherer(_image(v, rows=int(v))), [1, 2, 3]
    )
    assert predict.sizes == [6]  # 1 + 2 + 3 rows, one call
    for value, answer in zip([1, 2, 3], answers, strict=True):
        assert answer.shape == (value, 2) and np.all(answer == 4 * value)


def test_a_request_that_never_calls_or_fails_does_not_hold_the_others() -> None:
    predict = Counting()
    gatherer = CallGatherer(predict, 64)

    def work(kind: str) -> object:
        if kind == "fails":
            raise ValueError("bad request")
        if kind == "skips":
            return "no network"
        first = gatherer(_image(1.0))  # test-time augmentation: two meetings
        return gatherer(_image(2.0)) + first

    pool = gathered_pool(4)
    with pytest.raises(ValueError, match="bad request"):
        run_in_threads(gatherer, pool, work, ["calls", "fails", "skips", "calls"])
    assert gatherer.running == 0 and not gatherer.waiting
    assert sorted(predict.sizes) == [2, 2]  # both callers met twice; nobody waited for the others
    assert run_in_threads(gatherer, pool, work, ["calls", "skips"])[1] == "no network"


def test_a_failing_variant_fails_every_caller_of_that_meeting() -> None:
    gatherer = CallGatherer(Counting(fail=True), 64)
    results = run_in_threads(gatherer, gathered_pool(2), _caught(gatherer), [1.0, 2.0])
    assert results == ["variant broke", "variant broke"]


def _caught(gatherer: CallGatherer):  # type: ignore[no-untyped-def]
    def work(value: float) -> object:
        try:
            return gatherer(_image(value))
        except RuntimeError as exc:
            return str(exc)

    return work


def test_one_request_runs_in_the_callers_thread() -> None:
    predict = Counting()
    gatherer = CallGatherer(predict, 64)
    seen: list[str] = []
    run_in_threads(gatherer, gathered_pool(2), lambda v: seen.append(threading.current_thread().name), [1])
    assert seen == [threading.current_thread().name]
