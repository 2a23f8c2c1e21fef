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

from deploybench.results import AccuracyReport, MachineInfo, ParityReport, StackRecord, TrialRecord
from deploybench.stacks import StackLaunch, get_stack
from deploybench.stacks.process import ResourceMonitor, ServerStartError, log_tail
from deploybench.study.measure import LiveCallback, measure_candidate
from deploybench.study.plan import PlannedTrial
from deploybench.study.spec import StudyConfig, study_model_spec


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


def stack_launch(
    ctx: TrialContext, job: TrialJob, files: TrialFiles, on_message: Callable[[str], None]
) -> StackLaunch:
    return StackLaunch(
        model=study_model_spec(ctx.config),
        candidate=job.trial.candidate,
        workdir=files.stack_dir,
        log_path=files.log_path,
        cache_dir=ctx.cache_dir,
        timeout_s=ctx.config.startup_timeout_s,
        on_message=on_message,
    )


def run_served_trial(
    ctx: TrialContext,
    job: TrialJob,
    files: TrialFiles,
    on_live: LiveCallback,
    on_message: Callable[[str], None] = lambda message: None,
) -> TrialRecord:
    """Start the candidate's stack, run the load plan, stop it; a failure is a failed trial with its log."""
    started = now()
    base = base_record(ctx, job, started)
    parity = job.parity
    stack = get_stack(job.trial.candidate.stack)
    launch = stack_launch(ctx, job, files, on_message)
    record = StackRecord(
        name=stack.name, protocol=stack.protocol, settings=stack.settings(job.trial.candidate)
    )
    try:
        server = stack.start(launch)
    except ServerStartError as exc:
        return TrialRecord(
            **base,
            status="failed",
            reason=f"{stack.name} did not start: {exc}",
            parity=parity,
            stack=record,
            finished_at=now(),
            log_tail=exc.log_tail,
        )
    try:
        with ResourceMonitor(server.pid) as monitor:
            target = server.target(ctx.payloads, ctx.config.content_type)
            measured = measure_candidate(target, ctx.config, ctx.stop, on_live)
        crashed = not server.alive()
        record.reported = {} if crashed else server.reported()
    finally:
        server.stop()
    status, reason = measured.verdict(crashed)
    return TrialRecord(
        **base,
        status=status,
        reason=reason,
        parity=parity,
        points=measured.points,  # type: ignore[arg-type]
        peak_index=measured.peak_index,
        c16_index=measured.c16_index,
        slo_rate_index=measured.slo_rate_index,
        peak_rss_mb=monitor.peak_rss_bytes / 2**20 or None,
        server_cpu_pct=monitor.cpu_pct,
        front_cpu_pct=monitor.front_cpu_pct,
        stack=record,
        finished_at=now(),
        log_tail=log_tail(launch.log_path) if status == "failed" else None,
    )


@dataclass
class TrialEvents:
    """What an executor reports while trials run (the study forwards it to the CLI's progress)."""

    on_start: Callable[[TrialJob, str | None], None]  # the job, and the node it runs on (None: here)
    on_live: LiveCallback
    on_stage: Callable[[str], None]
