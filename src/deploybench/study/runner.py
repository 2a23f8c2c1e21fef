"""Execute a study: evaluate variants, plan candidates, serve and load-test each, record every trial.

Where the work runs is the executor's business (study/executors: this machine, or a Ray cluster of
several machine types); this module decides what to measure and keeps the study folder.
Interrupted studies resume: finished trials are read back from trials.jsonl and never repeated (a
trial lost to the infrastructure is not finished: it is measured again, study/loss.py); each machine's
in-process variant evaluation is kept (variants.json) and reused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploybench.inputs.payload import default_payload_path, read_payloads
from deploybench.load.noise import record_throughput_series
from deploybench.results import MachineInfo, TrialRecord, candidate_trials
from deploybench.study.environment import environment_changes
from deploybench.study.executors import (
    Executor,
    ExecutorError,
    MachineTarget,
    PrepareRequest,
    executor_for,
)
from deploybench.study.folder import study_key
from deploybench.study.measure import LiveCallback
from deploybench.study.plan import StackOffer, plan_trials
from deploybench.study.round_plans import final_groups
from deploybench.study.runoff import ROUND2
from deploybench.study.search import SearchRun, run_search
from deploybench.study.space import MachineShape, shape_from_environment
from deploybench.study.spec import StudyConfig, dump_study_config
from deploybench.study.store import ENVIRONMENT, VARIANTS, StudyStore, StudyStoreError, machine_file
from deploybench.study.trial import TrialContext, TrialEvents, TrialJob, unserved_record
from deploybench.study.variants_step import VariantsOutcome, summaries_from_json


@dataclass
class StudyProgress:
    """Callbacks the CLI uses to draw progress; the library itself prints nothing."""

    on_stage: Callable[[str], None] = lambda message: None
    on_machine: Callable[[MachineInfo], None] = lambda machine: None
    on_variants: Callable[[VariantsOutcome], None] = lambda outcome: None
    on_plan: Callable[[list[TrialJob], set[str]], None] = lambda jobs, done: None
    on_trial_start: Callable[[TrialJob, str | None], None] = lambda job, node: None
    on_trial_done: Callable[[TrialRecord], None] = lambda record: None
    on_live: LiveCallback = lambda update: None


@dataclass
class StudyOutcome:
    root: Path
    trials: list[TrialRecord]
    resumed: int = 0
    weights: str = "random"
    unfinished: list[str] = field(default_factory=list)  # what did not run and why; a rerun resumes it
    measured: int = 0  # trials this run recorded; 0 with resumed > 0: the answer is the earlier run's


@dataclass
class ReadyMachine:
    """A machine with its fingerprint and variants: what the plan needs."""

    target: MachineTarget
    info: MachineInfo
    variants: VariantsOutcome
    cores: int
    stacks: list[StackOffer]
    shape: MachineShape | None = None  # what the candidate space is sized to (study/space.py)


def study_payloads(config: StudyConfig) -> list[bytes]:
    """The request bodies the study sends (its --payload, else the bundled image)."""
    return read_payloads(config.payload or default_payload_path(), config.content_type)


def _variants_message(target: MachineTarget, cached: bool) -> str:
    where = "variants" if target.key is None else f"variants on {target.key}"
    if cached:
        return f"{where}: reusing the in-process evaluation in {machine_file(VARIANTS, target.key)}"
    return f"{where}: building, verifying and timing every backend in-process"


def _check_same_environment(
    store: StudyStore, target: MachineTarget, environment: dict[str, Any], reuses_variants: bool
) -> None:
    """Measurements of another machine or library set never join this folder's."""
    previous = store.read_json(machine_file(ENVIRONMENT, target.key))
    if previous is None or not (reuses_variants or store.trial_ids()):
        return
    changes = environment_changes(previous, environment)
    if changes:
        where = "this machine" if target.key is None else target.key
        raise StudyStoreError(
            f"{store.root} holds measurements from another environment than {where}'s now "
            f"({'; '.join(changes)}); rerun with --fresh to start over, or choose another --out folder"
        )


def _ready(
    executor: Executor, store: StudyStore, cache_dir: Path | None, progress: StudyProgress
) -> list[ReadyMachine]:
    """Fingerprint every machine and evaluate its variants (unless the folder already has them)."""
    cached: dict[str | None, Any] = {}
    started = datetime.now(UTC).isoformat(timespec="seconds")
    requests = []
    for target in executor.targets():
        cached[target.key] = store.read_json(machine_file(VARIANTS, target.key))
        requests.append(PrepareRequest(target, need_variants=cached[target.key] is None))
        progress.on_stage(_variants_message(target, cached[target.key] is not None))
    ready: list[ReadyMachine] = []
    for prepared in executor.prepare(requests, cache_dir, progress.on_stage):
        target = prepared.target
        if prepared.error is not None:
            executor.unfinished.append(f"{target.key}: not prepared: {prepared.error}")
            progress.on_stage(f"[red]{target.key}: not prepared[/]: {prepared.error}")
            continue
        _check_same_environment(store, target, prepared.environment, cached[target.key] is not None)
        store.record_environment(target.key, prepared.environment, started)
        raw = prepared.variants_raw if prepared.variants_raw is not None else cached[target.key]
        if prepared.variants_raw is not None:
            store.write_json(machine_file(VARIANTS, target.key), raw)
        if target.key is not None:
            progress.on_stage(f"variants on {target.key}:")
        variants = summaries_from_json(raw)
        progress.on_variants(variants)
        info = executor.machine_info(target, prepared.environment)
        progress.on_machine(info)
        cores = int(prepared.environment["cores"])
        shape = shape_from_environment(prepared.environment, target.key or "this machine")
        ready.append(ReadyMachine(target, info, variants, cores, prepared.stacks, shape))
    if not ready:
        raise ExecutorError("no machine could be prepared: " + "; ".join(executor.unfinished))
    return ready


def _jobs(config: StudyConfig, machines: list[ReadyMachine]) -> list[TrialJob]:
    """Every machine's plan; served candidates first (fastest backends first), as plan_trials orders them."""
    jobs = []
    for machine in machines:
        summaries = machine.variants.summaries
        for trial in plan_trials(config, summaries, machine.cores, machine.stacks, machine.shape):
            backend = trial.candidate.backend
            parity, accuracy = machine.variants.parity.get(backend), machine.variants.accuracy.get(backend)
            trial_id = machine.target.trial_id(trial.candidate.key)
            jobs.append(TrialJob(trial_id, trial, machine.info, parity, accuracy))
    return jobs


def record_runoff_drift(records: list[TrialRecord]) -> None:
    """Round 2's runoff serves every contender for several rounds of windows, a minute or more: each
    server's window-to-window spread is a sample of this machine's between-run noise, so the study
    adds it to the machine's record (load/noise.py), throughput only, and later points on this
    machine carry a measured term instead of the prior. The probe's short first windows stay out."""
    series = {
        record.trial_id.split("#")[0]: record.runoff.rps
        for record in records
        if record.runoff is not None and record.runoff.group.startswith(ROUND2)
    }
    if series:
        by = f"deploybench run: round 2's paired runoff, {len(series)} servers"
        record_throughput_series(list(series.values()), by=by)


def run_study(
    config: StudyConfig,
    root: Path,
    *,
    fresh: bool = False,
    cache_dir: Path | None = None,
    progress: StudyProgress | None = None,
    stop: threading.Event | None = None,
    executor: Executor | None = None,
) -> StudyOutcome:
    """Run (or resume) a study in `root`. Returns every trial recorded there, old and new."""
    progress = progress or StudyProgress()
    store = StudyStore(root)
    store.acquire(dump_study_config(config), fresh=fresh, key=study_key(config))
    try:
        payloads = study_payloads(config)  # a bad payload is an error before anything is built
        with executor or executor_for(config) as runner:
            machines = _ready(runner, store, cache_dir, progress)
            weights = machines[0].variants.weights
            ctx = TrialContext(config, weights, payloads, cache_dir, stop or threading.Event())
            jobs = _jobs(config, machines)
            done, recorded = store.finished_ids(), len(store.records())
            progress.on_plan(jobs, done)
            events = TrialEvents(progress.on_trial_start, progress.on_live, progress.on_stage)

            kept: list[TrialRecord] = []

            def keep(record: TrialRecord) -> None:
                kept.append(record)
                store.append_trial(record)
                progress.on_trial_done(record)
                if record.retryable:  # lost to the infrastructure: the next run measures it
                    runner.unfinished.append(f"{record.trial_id}: {record.reason}")

            known = {t.trial_id: t for t in store.trials() if t.trial_id in done}
            search = SearchRun(runner, ctx, store, events, keep, known)
            finalists = run_search(search, [j for j in jobs if j.trial.action == "serve"])
            for context, group in final_groups(ctx, [j for j in finalists if j.trial_id not in done]):
                for record in runner.run_trials(context, group, store, events):
                    keep(search.with_runoff(record))
            for job in jobs:
                if job.trial.action != "serve" and job.trial_id not in done:
                    record = unserved_record(ctx, job)
                    store.append_trial(record)
                    progress.on_trial_done(record)
            unfinished = list(runner.unfinished)
            if runner.name == "local":  # the runoff ran on this machine: its drift is this machine's
                record_runoff_drift(kept)
        trials, measured = candidate_trials(store.trials()), len(store.records()) - recorded
        return StudyOutcome(root, trials, len(done), weights, unfinished, measured)
    finally:
        store.release()
