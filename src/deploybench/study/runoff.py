"""Search round 2 as a paired runoff: every contender served at once, and measured in turn.

Why: on a shared host one configuration's throughput drifts over minutes by more than the gaps
between the best configurations, so contenders measured one after another are ordered by the drift,
and two runs of one study can pick different winners. In a runoff every contender's server is up for
the whole round (an idle server costs no CPU), and the load visits each one in turn for one short
window per round, the order reversed every round (A B C, C B A, ...). Two contenders are compared
window by window, seconds apart: the ratio of their throughputs cancels the drift, and its spread
over the rounds gives the interval (a paired design: deploybench.recommend.ties.paired_ratio).
Before its first window a contender warms every batch size it can form (a closed burst of
workers x b clients for each b up to its max batch): a runtime's first call at a batch shape is slow
and would otherwise land in a measured window. With a p99 bound (at_knee) each contender is visited
at the lowest level that keeps all its workers' batches full (2 x workers x max batch, at most the
round's level): there its latency is as low as its full throughput allows, so whether its windows
clearly miss the bound says whether it can serve that throughput within it; at a level far above
its knee queueing alone would push every contender's p99 over.
A visit lost to the infrastructure (the load generator broke; the server was killed by a signal
from outside) marks the contender's record lost (retryable): the search measures it again and never
counts it as the candidate's failure. A server that does not start, or exits on its own, fails it.
Only the local executor runs it; on a Ray cluster the rounds stay one trial after another.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from deploybench.config import LoadConfig
from deploybench.load import run_load
from deploybench.results import Candidate, LoadPoint, RunoffSample, TrialRecord
from deploybench.stacks import get_stack
from deploybench.stacks.process import ServerStartError, log_tail
from deploybench.study.loss import broken_load, killed_from_outside, lost_reason, oom_kills
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

ROUND2 = "round 2"  # the search's longer runoff: its samples also measure this machine's drift (runner.py)


@dataclass(frozen=True)
class RunoffPlan:
    """Where and how long each visit measures, and how many rounds visit every contender."""

    concurrency: int
    window_s: float
    warmup_s: float
    rounds: int
    first_warmup_s: float = 0.0  # before each contender's first window; 0: warmup_s
    label: str = ROUND2  # names the runoff's group: only samples of one group are compared
    warm_batches: bool = False  # warm every batch size a contender can form before its first window
    at_knee: bool = False  # each contender at its own knee level (with a p99 bound; see above)

    def level(self, job: TrialJob) -> int:
        """Where this contender's windows run: the round's level, or its knee with at_knee."""
        candidate = job.trial.candidate
        knee = 2 * candidate.workers * candidate.max_batch_size
        return min(self.concurrency, knee) if self.at_knee else self.concurrency


@dataclass
class Contender:
    """One served contender: its job, its server (None when it did not start), what it measured."""

    job: TrialJob
    server: Any = None
    started: str = field(default_factory=now)
    failure: str | None = None
    log: str | None = None
    points: list[LoadPoint] = field(default_factory=list)
    lost: bool = False  # the failure was the infrastructure's, not the candidate's
    oom_before: int | None = None  # the OOM killer's count when its server started (study/loss.py)


def visit_order(count: int, round_index: int) -> list[int]:
    """A B C, then C B A, ...: each contender is early in one round and late in the next."""
    order = list(range(count))
    return order if round_index % 2 == 0 else order[::-1]


def visit_config(plan: RunoffPlan, first: bool = False, level: int | None = None) -> LoadConfig:
    """One closed-loop window after a short warm-up (the server idled while the others were measured);
    a longer one on the first visit, the server's first requests since it started."""
    warmup = max(plan.warmup_s, plan.first_warmup_s) if first else plan.warmup_s
    level = level or plan.concurrency
    return LoadConfig(
        concurrency=level,
        duration_s=warmup + plan.window_s,
        warmup_s=warmup,
        warmup_requests=level,
        window_s=plan.window_s,
        max_windows=1,
        min_window_requests=1,
    )


def _start(ctx: TrialContext, store: StudyStore, contender: Contender, events: TrialEvents) -> None:
    job = contender.job
    files = TrialFiles(store.log_path(job.trial_id), store.stack_dir(job.trial_id))
    launch = stack_launch(ctx, job, files, events.on_stage)
    events.on_start(job, None)
    contender.oom_before = oom_kills()
    try:
        contender.server = get_stack(job.trial.candidate.stack).start(launch)
    except ServerStartError as exc:
        killed = killed_from_outside(exc.returncode, contender.oom_before)
        contender.failure = f"{job.trial.candidate.stack} did not start: {killed or exc}"
        contender.log, contender.lost = exc.log_tail, killed is not None


def warm_configs(job: TrialJob) -> list[LoadConfig]:
    return batch_warmups(job.trial.candidate)


def batch_warmups(candidate: Candidate) -> list[LoadConfig]:
    """A closed burst of workers x b clients for each batch size b the candidate can form: two
    batches per worker at each size, so every worker has run every shape before it is measured."""
    configs = []
    for batch in range(1, candidate.max_batch_size + 1):
        clients = candidate.workers * batch
        configs.append(
            LoadConfig(
                concurrency=clients,
                max_requests=2 * clients,
                duration_s=30.0,
                warmup_s=0.0,
                warmup_requests=0,
                window_s=30.0,
                max_windows=1,
                min_window_requests=1,
            )
        )
    return configs


def _check_after(contender: Contender, report_points: list[LoadPoint]) -> None:
    """After a load: a broken load generator or a server killed from outside is lost, not failed
    (study/loss.py decides both, as for any trial)."""
    server = contender.server
    broken = broken_load(report_points)
    if broken is not None:
        contender.failure, contender.lost = broken, True
    elif not server.alive():
        code = server.process.proc.returncode
        killed = killed_from_outside(code, contender.oom_before)
        how = f"was {killed}" if killed else f"exited with code {code}"
        contender.failure, contender.lost = f"its server {how} during the runoff", killed is not None
        contender.log = log_tail(server.process.log_path)


def _visit(ctx: TrialContext, contender: Contender, plan: RunoffPlan) -> None:
    """One window at this contender (after warming its batch sizes, on the first visit); a server
    that died is not visited again."""
    server = contender.server
    if server is None or contender.failure is not None:
        return
    target = server.target(ctx.payloads, ctx.config.content_type)
    first = not contender.points
    loads = warm_configs(contender.job) if first and plan.warm_batches else []
    loads.append(visit_config(plan, first=first, level=plan.level(contender.job)))
    for config in loads:
        report = run_load(target, config, stop_event=ctx.stop)
        if ctx.stop.is_set():
            raise KeyboardInterrupt  # a runoff cut short is not recorded: it reruns on resume
        _check_after(contender, report.points[:1])
        if contender.failure is not None:
            return
    contender.points.extend(report.points[:1])


def _record(ctx: TrialContext, contender: Contender, plan: RunoffPlan, group: str) -> TrialRecord:
    """The contender's round-2 record: every visit's point, and its runoff sample when all answered."""
    base = {**base_record(ctx, contender.job, contender.started), "finished_at": now()}
    rps = [point.throughput_rps for point in contender.points]
    if contender.failure is None and (len(rps) < plan.rounds or min(rps, default=0.0) <= 0):
        contender.failure = "no successful request in a round of the runoff"
    if contender.failure is not None:
        reason = lost_reason(contender.failure) if contender.lost else contender.failure
        return TrialRecord(
            **base,
            status="failed",
            reason=reason,
            points=contender.points,
            log_tail=contender.log,
            retryable=contender.lost,
        )
    level = plan.level(contender.job)
    sample = RunoffSample(group=group, concurrency=level, window_s=plan.window_s, rps=rps)
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
    group = f"{plan.label} on {machine.instance or machine.label if machine else 'this machine'} at {now()}"
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
