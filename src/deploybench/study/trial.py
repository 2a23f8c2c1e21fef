"""One trial on the machine this code runs on: serve the candidate on loopback, load it, record it.

Every executor ends up here: the local one calls it in the study process, the Ray one in a fresh
process on the node that owns the trial (study/executors/node.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deploybench.load import LoadError
from deploybench.results import AccuracyReport, Candidate, MachineInfo, ParityReport, StackRecord, TrialRecord
from deploybench.stacks import StackLaunch, StackServer, get_stack
from deploybench.stacks.process import ResourceMonitor, ServerStartError, log_tail
from deploybench.study.loss import as_lost, broken_load, killed_from_outside, oom_kills
from deploybench.study.measure import LiveCallback, MeasureResult, measure_candidate
from deploybench.study.plan import PlannedTrial
from deploybench.study.spec import StudyConfig, launch_spec


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class TrialContext:
    """Fixed inputs every trial of one study shares."""

    config: StudyConfig
    weights: str
    payloads: list[bytes]
    cache_dir: Path | None
    stop: threading.Event


@dataclass(frozen=True)
class TrialJob:
    """One planned trial bound to the machine it runs on; trial_id is what resume skips."""

    trial_id: str
    trial: PlannedTrial
    machine: MachineInfo
    parity: ParityReport | None = None
    accuracy: AccuracyReport | None = None  # labelled accuracy of the candidate's variant, when measured


def base_record(ctx: TrialContext, job: TrialJob, started: str) -> dict[str, object]:
    return {
        "trial_id": job.trial_id,
        "model": ctx.config.model.source,
        "weights": ctx.weights,
        "candidate": job.trial.candidate,
        "precision": job.trial.precision,
        "machine": job.machine,
        "started_at": started,
        "accuracy": job.accuracy,
    }


def unserved_record(ctx: TrialContext, job: TrialJob) -> TrialRecord:
    """A candidate the plan did not serve (rejected, skipped, failed to build), with the plan's reason."""
    started = now()
    return TrialRecord(
        **base_record(ctx, job, started),
        status=job.trial.action,
        reason=job.trial.reason,  # type: ignore[arg-type]
        parity=job.parity,
        finished_at=started,
    )


def failed_record(
    ctx: TrialContext,
    job: TrialJob,
    machine: MachineInfo,
    reason: str,
    started: str,
    log_tail: str | None = None,
) -> TrialRecord:
    """A trial that began but never returned its record (its node died, say): failed, with why."""
    base = {**base_record(ctx, job, started), "machine": machine}
    return TrialRecord(
        **base, status="failed", reason=reason, parity=job.parity, finished_at=now(), log_tail=log_tail
    )


@dataclass(frozen=True)
class TrialFiles:
    """Where a trial's server writes: its log, and its stack's files (config, model store, workspace)."""

    log_path: Path
    stack_dir: Path


def candidate_launch(
    config: StudyConfig,
    candidate: Candidate,
    files: TrialFiles,
    cache_dir: Path | None,
    on_message: Callable[[str], None],
) -> StackLaunch:
    """How the study starts a candidate's server: one rule for its trials and any later rerun of one
    (deploybench check-plan), so a rerun serves exactly what was measured."""
    return StackLaunch(
        model=launch_spec(config, candidate),
        candidate=candidate,
        workdir=files.stack_dir,
        log_path=files.log_path,
        cache_dir=cache_dir,
        timeout_s=config.startup_timeout_s,
        on_message=on_message,
    )


def stack_launch(
    ctx: TrialContext, job: TrialJob, files: TrialFiles, on_message: Callable[[str], None]
) -> StackLaunch:
    return candidate_launch(ctx.config, job.trial.candidate, files, ctx.cache_dir, on_message)


def _not_started(
    base: dict[str, object], job: TrialJob, record: StackRecord, exc: ServerStartError, oom_before: int | None
) -> TrialRecord:
    """A server that did not start failed on its own, unless it was killed from outside meanwhile."""
    failed = TrialRecord(
        **base,
        status="failed",
        reason=f"{record.name} did not start: {exc}",
        parity=job.parity,
        stack=record,
        finished_at=now(),
        log_tail=exc.log_tail,
    )
    killed = killed_from_outside(exc.returncode, oom_before)
    return as_lost(failed, f"its server was {killed} while starting") if killed else failed


def _measure(
    ctx: TrialContext, server: StackServer, record: StackRecord, on_live: LiveCallback
) -> tuple[MeasureResult, ResourceMonitor, int | None, str | None]:
    """Load the served candidate: (its measurements, the monitor, the server's exit code if it exited,
    why the load generator failed if it did). The stack's self-report is read while it still runs."""
    broken = None
    measured = MeasureResult()
    with ResourceMonitor(server.pid) as monitor:
        try:
            target = server.target(ctx.payloads, ctx.config.content_type)
            measured = measure_candidate(target, ctx.config, ctx.stop, on_live)
        except LoadError as exc:  # the load generator's own failure, never a request's (those are counted)
            broken = f"the load generator failed ({exc})"
    returncode = server.process.proc.poll()
    record.reported = {} if returncode is not None else server.reported()
    return measured, monitor, returncode, broken


def run_served_trial(
    ctx: TrialContext,
    job: TrialJob,
    files: TrialFiles,
    on_live: LiveCallback,
    on_message: Callable[[str], None] = lambda message: None,
) -> TrialRecord:
    """Start the candidate's stack, run the load plan, stop it; a failure is a failed trial with its log,
    marked retryable when the infrastructure, not the candidate, broke it (study/loss.py)."""
    base = base_record(ctx, job, now())
    stack = get_stack(job.trial.candidate.stack)
    launch = stack_launch(ctx, job, files, on_message)
    record = StackRecord(
        name=stack.name, protocol=stack.protocol, settings=stack.settings(job.trial.candidate)
    )
    oom_before = oom_kills()
    try:
        server = stack.start(launch)
    except ServerStartError as exc:
        return _not_started(base, job, record, exc, oom_before)
    try:
        measured, monitor, returncode, broken = _measure(ctx, server, record, on_live)
    finally:
        server.stop()
    status, reason = measured.verdict(returncode is not None)
    trial = TrialRecord(
        **base,
        status=status if broken is None else "failed",
        reason=reason,
        parity=job.parity,
        points=measured.points,  # type: ignore[arg-type]
        peak_index=measured.peak_index,
        c16_index=measured.c16_index,
        slo_rate_index=measured.slo_rate_index,
        peak_rss_mb=monitor.peak_rss_bytes / 2**20 or None,
        server_cpu_pct=monitor.cpu_pct,
        startup_s=server.ready_s,
        front_cpu_pct=monitor.front_cpu_pct,
        stack=record,
        finished_at=now(),
        log_tail=log_tail(launch.log_path) if status == "failed" or broken else None,
    )
    return _judge_loss(trial, returncode, oom_before, broken or broken_load(measured.points))


def _judge_loss(
    trial: TrialRecord, returncode: int | None, oom_before: int | None, broken: str | None
) -> TrialRecord:
    """Lost when its server was killed from outside, or when the load generator broke while the server
    ran; a server that exited by itself failed on its own, whatever the load generator saw after."""
    killed = killed_from_outside(returncode, oom_before)
    if killed:
        return as_lost(trial, f"its server was {killed}")
    return as_lost(trial, broken) if broken and returncode is None else trial


@dataclass
class TrialEvents:
    """What an executor reports while trials run (the study forwards it to the CLI's progress)."""

    on_start: Callable[[TrialJob, str | None], None]  # the job, and the node it runs on (None: here)
    on_live: LiveCallback
    on_stage: Callable[[str], None]
