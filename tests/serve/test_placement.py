"""The core plan: each worker its own cores, the front on what is left (or sharing), env for OpenMP."""

from __future__ import annotations

import pytest

from deploybench.config import RuntimeKnobs, ServerConfig
from deploybench.serve.inflight import inflight_depth
from deploybench.serve.placement import plan_cores, worker_environment


def test_two_one_thread_workers_get_one_core_each_and_the_front_shares() -> None:
    plan = plan_cores([0, 1], workers=2, threads=1, knobs=RuntimeKnobs())
    assert plan.workers == ((1,), (0,)) and plan.front is None


def test_front_takes_the_cores_no_worker_has_only_when_asked_and_some_are_left() -> None:
    rest = RuntimeKnobs(front="rest")
    assert plan_cores([0, 1], 1, 1, rest).workers == ((1,),)
    assert plan_cores([0, 1], 1, 1, rest).front == (0,)
    assert plan_cores([0, 1], 1, 1, RuntimeKnobs()).front is None
    assert plan_cores([0, 1], 1, 2, rest).front is None  # nothing left: the front shares
    assert plan_cores([0, 1, 2, 3], 1, 2, rest).workers == ((2, 3),)


def test_unpinned_and_oversubscribed_layouts() -> None:
    assert plan_cores([0, 1], 2, 1, RuntimeKnobs(pin=False)).workers == (None, None)
    four = plan_cores([0, 1], 4, 1, RuntimeKnobs())
    assert four.workers == ((0,), (1,), (0,), (1,)) and "oversubscribed" in four.note
    wide = plan_cores([0, 1, 2, 3], 2, 4, RuntimeKnobs())
    assert wide.workers == ((0, 1), (2, 3))


def test_worker_environment_is_explicit_about_threads_waiting_and_binding() -> None:
    env = worker_environment(2, RuntimeKnobs(streams=2))
    # libgomp's own spin-then-sleep: removed, whatever the parent had (passive served eager at 0.52)
    assert env["OMP_NUM_THREADS"] == "1" and env["OMP_WAIT_POLICY"] is None and env["GOMP_SPINCOUNT"] is None
    assert env["OMP_PROC_BIND"] == "false" and env["OMP_PLACES"] is None
    assert worker_environment(1, RuntimeKnobs(spin=False))["OMP_WAIT_POLICY"] == "PASSIVE"
    pinned = worker_environment(2, RuntimeKnobs(spin=True, thread_pinning=True))
    assert pinned["OMP_NUM_THREADS"] == "2" and pinned["OMP_WAIT_POLICY"] == "ACTIVE"
    assert pinned["OMP_PROC_BIND"] == "close" and pinned["OMP_PLACES"] == "cores"


def test_batches_in_flight_follow_streams_and_overlap_but_never_for_user_handlers() -> None:
    server = ServerConfig(threads=2, runtime=RuntimeKnobs(streams=2, overlap=True))
    assert inflight_depth(server, builtin=True) == 3
    assert inflight_depth(server, builtin=False) == 1
    assert inflight_depth(ServerConfig(), builtin=True) == 1


def test_more_streams_than_threads_is_refused() -> None:
    with pytest.raises(ValueError, match="streams"):
        ServerConfig(threads=1, runtime=RuntimeKnobs(streams=2))
