"""Search round 2 as a paired runoff: every contender served at once, and measured in turn.

Why: on a shared host one configuration's throughput drifts over minutes by more than the gaps
between the best configurations, so contenders measured one after another are ordered by the drift,
and two runs of one study can pick different winners. In a runoff every contender's server is up for
the whole round (an idle server costs no CPU), and the load visits each one in turn for one short
window per round, the order reversed every round (A B C, C B A, ...). Two contenders are compared
window by window, seconds apart: the ratio of their throughputs cancels the drift, and its spread
over the rounds gives the interval (a paired design: deploybench.recommend.ties.paired_ratio).
Only the local executor runs it; on a Ray cluster round 2 stays one trial after another.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from deploybench.config import LoadConfig
from deploybench.load import run_load
from deploybench.results import LoadPoint, RunoffSample, TrialRecord
from deploybench.stacks import get_stack
from deploybench.stacks.process import ServerStartError, log_tail
from deploybench.study.store import StudyStore
from deploybench.study.trial import (
    TrialContext,
    TrialEvents,
    TrialFiles,
    TrialJob,
    base_record,
    now,
    stack_launch,
)


@dataclass(frozen=True)
class RunoffPlan:
    """Where and how long each visit measures, and how many rounds visit every contender."""

    concurrency: int
    window_s: float
    warmup_s: float
    rounds: int
    first_warmup_s: float = 0.0  # before each contender's first window; 0: warmup_s


@dataclass
class Contender:
    """One served contender: its job, its server (None when it did not start), what it measured."""

    job: TrialJob
    server: Any = None
    started: str = field(default_factory=now)
    failure: str | None = None
    log: str | None = None
    points: list[LoadPoint] = field(default_factory=list)


def visit_order(count: int, round_index: int) -> list[int]:
    """A B C, then C B A, ...: each contender is early in one round and late in the next."""
    order = list(range(count))
    return order if round_index % 2 == 0 else order[::-1]


def visit_config(plan: RunoffPlan, first: bool = False) -> LoadConfig:
    """One closed-loop window after a short warm-up (the server idled while the others were measured);
    a longer one on the first visit, the server's first requests since it started."""
    warmup = max(plan.warmup_s, plan.first_warmup_s) if first else plan.warmup_s
    return LoadConfig(
        concurrency=plan.concurrency,
        duration_s=warmup + plan.window_s,
        warmup_s=warmup,
        warmup_requests=plan.concurrency,
        window_s=plan.window_s,
        max_windows=1,
        min_window_requests=1,
    )


def _start(ctx: TrialContext, store: StudyStore, contender: Contender, events: TrialEvents) -> None:
    job = contender.job
    files = TrialFiles(store.log_path(job.trial_id), store.stack_dir(job.trial_id))
    launch = stack_launch(ctx, job, files, events.on_stage)
    events.on_start(job, None)
    try:
        contender.server = get_stack(job.trial.candidate.stack).start(launch)
    except ServerStartError as exc:
        contender.failure = f"{job.trial.candidate.stack} did not start: {exc}"
        contender.log = exc.log_tail


def _visit(ctx: TrialContext, contender: Contender, plan: RunoffPlan) -> None:
    """One window at this contender; a server that died is not visited again."""
    server = contender.server
    if server is None or contender.failure is not None:
        return
    target = server.target(ctx.payloads, ctx.config.content_type)
    report = run_load(target, visit_config(plan, first=not contender.points), stop_event=ctx.stop)
    if ctx.stop.is_set():
        raise KeyboardInterrupt  # a runoff cut short is not recorded: it reruns on resume
    contender.points.extend(report.points[:1])
    if not server.alive():
        contender.failure = "server process exited during the runoff"
        contender.log = log_tail(server.process.log_path)


def _record(ctx: TrialContext, contender: Contender, plan: RunoffPlan, group: str) -> TrialRecord:
    """The contender's round-2 record: every visit's point, and its runoff sample when all answered."""
    base = {**base_record(ctx, contender.job, contender.started), "finished_at": now()}
    rps = [point.throughput_rps for point in contender.points]
    if contender.failure is None and (len(rps) < plan.rounds or min(rps, default=0.0) <= 0):
        contender.failure = "no successful request in a round of the runoff"
    if contender.failure is not None:
        return TrialRecord(
            **base, status="failed", reason=contender.failure, points=contender.points, log_tail=contender.log
        )
    sample = RunoffSample(group=group, concurrency=plan.concurrency, window_s=plan.window_s, rps=rps)
    return TrialRecord(**base, status="ok", points=contender.points, runoff=sample)


def _round_line(contenders: list[Contender], round_index: int, rounds: int) -> str:
    figures = ", ".join(
        f"{c.job.trial.candidate.key} {c.points[-1].throughput_rps:.1f}"
        for c in contenders
        if c.failure is None and c.points
    )
    return f"     runoff round {round_index + 1} of {rounds} (req/s): {figures}"


def run_runoff(
    ctx: TrialContext, jobs: list[TrialJob], plan: RunoffPlan, store: StudyStore, events: TrialEvents
) -> list[TrialRecord]:
    """Start every contender's server, visit each in turn for `plan.rounds` rounds, stop them all;
    one record per job (failed, with why, for a server that did not start or stopped answering)."""
    contenders = [Contender(job) for job in jobs]
    machine = jobs[0].machine if jobs else None
    group = f"round 2 on {machine.instance or machine.label if machine else 'this machine'} at {now()}"
    with ExitStack() as servers:
        for contender in contenders:
            if ctx.stop.is_set():
                raise KeyboardInterrupt
            _start(ctx, store, contender, events)
            if contender.server is not None:
                servers.callback(contender.server.stop)
        for round_index in range(plan.rounds):
            for index in visit_order(len(contenders), round_index):
                _visit(ctx, contenders[index], plan)
            events.on_stage(_round_line(contenders, round_index, plan.rounds))
    return [_record(ctx, contender, plan, group) for contender in contenders]
