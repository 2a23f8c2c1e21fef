"""Execute a study: evaluate variants, plan candidates, serve and load-test each, record every trial.

Interrupted studies resume: finished trials are read back from trials.jsonl and never repeated; the
in-process variant evaluation is kept in variants.json and reused.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from deploybench.hardware import detect_machine
from deploybench.machine import resolve_machine
from deploybench.payload import default_payload_path, read_payloads
from deploybench.results import AccuracyReport, MachineInfo, StackRecord, TrialRecord
from deploybench.stacks import StackLaunch, all_stacks, get_stack, resolve_stacks
from deploybench.study.environment import fingerprint
from deploybench.study.launcher import ResourceMonitor, ServerStartError, log_tail
from deploybench.study.measure import LiveCallback, measure_candidate
from deploybench.study.plan import PlannedTrial, StackOffer, plan_trials
from deploybench.study.spec import StudyConfig, dump_study_config, study_model_spec
from deploybench.study.store import ENVIRONMENT, VARIANTS, StudyStore
from deploybench.study.variants_step import VariantsOutcome, evaluate_study_variants, summaries_from_json


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class StudyProgress:
    """Callbacks the CLI uses to draw progress; the library itself prints nothing."""

    on_stage: Callable[[str], None] = lambda message: None
    on_machine: Callable[[MachineInfo], None] = lambda machine: None
    on_variants: Callable[[VariantsOutcome], None] = lambda outcome: None
    on_plan: Callable[[list[PlannedTrial], set[str]], None] = lambda trials, done: None
    on_trial_start: Callable[[PlannedTrial], None] = lambda trial: None
    on_trial_done: Callable[[TrialRecord], None] = lambda record: None
    on_live: LiveCallback = lambda update: None


@dataclass
class StudyOutcome:
    root: Path
    trials: list[TrialRecord]
    resumed: int = 0
    weights: str = "random"


@dataclass
class TrialContext:
    """Fixed inputs every trial of one study shares."""

    config: StudyConfig
    store: StudyStore
    machine: MachineInfo
    weights: str
    payloads: list[bytes]
    cache_dir: Path | None
    stop: threading.Event
    accuracy: dict[str, AccuracyReport] = field(default_factory=dict)


def _base_record(ctx: TrialContext, trial: PlannedTrial, started: str) -> dict[str, object]:
    return {
        "trial_id": trial.candidate.key,
        "model": ctx.config.model.source,
        "weights": ctx.weights,
        "candidate": trial.candidate,
        "precision": trial.precision,
        "machine": ctx.machine,
        "started_at": started,
        "accuracy": ctx.accuracy.get(trial.candidate.backend),
    }


def _unserved_record(ctx: TrialContext, trial: PlannedTrial, parity: dict[str, object] | None) -> TrialRecord:
    started = now()
    return TrialRecord(
        **_base_record(ctx, trial, started),
        status=trial.action,
        reason=trial.reason,  # type: ignore[arg-type]
        parity=parity,
        finished_at=started,
    )


def _stack_launch(ctx: TrialContext, trial: PlannedTrial, on_message: Callable[[str], None]) -> StackLaunch:
    key = trial.candidate.key
    return StackLaunch(
        model=study_model_spec(ctx.config),
        candidate=trial.candidate,
        workdir=ctx.store.stack_dir(key),
        log_path=ctx.store.log_path(key),
        cache_dir=ctx.cache_dir,
        timeout_s=ctx.config.startup_timeout_s,
        on_message=on_message,
    )


def run_served_trial(
    ctx: TrialContext,
    trial: PlannedTrial,
    parity: dict[str, object] | None,
    on_live: LiveCallback,
    on_message: Callable[[str], None] = lambda message: None,
) -> TrialRecord:
    """Start the candidate's stack, run the load plan, stop it; a failure is a failed trial with its log."""
    started = now()
    base = _base_record(ctx, trial, started)
    stack = get_stack(trial.candidate.stack)
    launch = _stack_launch(ctx, trial, on_message)
    record = StackRecord(name=stack.name, protocol=stack.protocol, settings=stack.settings(trial.candidate))
    try:
        server = stack.start(launch)
    except ServerStartError as exc:
        return TrialRecord(
            **base,
            status="failed",
            reason=f"{stack.name} did not start: {exc}",
            parity=parity,  # type: ignore[arg-type]
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


def _variants(
    store: StudyStore, config: StudyConfig, cache_dir: Path | None, progress: StudyProgress
) -> VariantsOutcome:
    cached = store.read_json(VARIANTS)
    if cached is not None:
        progress.on_stage("variants: reusing the in-process evaluation in variants.json")
        return summaries_from_json(cached)
    progress.on_stage("variants: building, verifying and timing every backend in-process")
    outcome = evaluate_study_variants(config, cache_dir, progress.on_stage)
    store.write_json(VARIANTS, outcome.raw)
    return outcome


def stack_offers(names: list[str]) -> list[StackOffer]:
    """Resolve the study's stacks on this machine: `all` expanded, each one's availability and backends."""
    stacks = all_stacks()
    offers = []
    for name in resolve_stacks(names):
        stack = stacks[name]()
        availability = stack.availability()
        offers.append(StackOffer(name, None if availability.ok else availability.reason, stack.backends))
    return offers


def _payloads(config: StudyConfig) -> list[bytes]:
    return read_payloads(config.payload or default_payload_path(), config.content_type)


def run_study(
    config: StudyConfig,
    root: Path,
    *,
    fresh: bool = False,
    cache_dir: Path | None = None,
    progress: StudyProgress | None = None,
    stop: threading.Event | None = None,
) -> StudyOutcome:
    """Run (or resume) a study in `root`. Returns every trial recorded there, old and new."""
    progress = progress or StudyProgress()
    store = StudyStore(root)
    store.acquire(dump_study_config(config), fresh=fresh)
    try:
        payloads = _payloads(config)  # a bad payload is an error before anything is built
        profile = detect_machine()
        machine = resolve_machine(config.machine, profile, socket.gethostname())  # before measuring
        progress.on_machine(machine)
        env = fingerprint(profile)
        store.write_json(ENVIRONMENT, env)
        variants = _variants(store, config, cache_dir, progress)
        progress.on_variants(variants)
        ctx = TrialContext(
            config,
            store,
            machine,
            variants.weights,
            payloads,
            cache_dir,
            stop or threading.Event(),
            variants.accuracy,
        )
        offers = stack_offers(config.stacks)
        planned = plan_trials(config, variants.summaries, profile.cores, offers)
        done = store.trial_ids()
        progress.on_plan(planned, done)
        for trial in planned:
            if trial.candidate.key in done:
                continue
            if ctx.stop.is_set():
                raise KeyboardInterrupt
            progress.on_trial_start(trial)
            parity = variants.parity.get(trial.candidate.backend)
            if trial.action == "serve":
                record = run_served_trial(ctx, trial, parity, progress.on_live, progress.on_stage)
            else:
                record = _unserved_record(ctx, trial, parity)
            if ctx.stop.is_set():
                raise KeyboardInterrupt  # a trial cut short by Ctrl-C is not recorded: it reruns on resume
            store.append_trial(record)
            progress.on_trial_done(record)
        return StudyOutcome(root, store.trials(), resumed=len(done), weights=variants.weights)
    finally:
        store.release()
