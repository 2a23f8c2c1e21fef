"""This machine: variants in the study process, then one trial after another on loopback."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from deploybench.hardware import MachineProfile, detect_machine
from deploybench.pricing.machine import resolve_machine
from deploybench.results import MachineInfo, TrialRecord
from deploybench.study.environment import fingerprint, stack_offers
from deploybench.study.executors.base import (
    Executor,
    MachineTarget,
    Prepared,
    PrepareRequest,
    register,
)
from deploybench.study.runoff import RunoffPlan, run_runoff
from deploybench.study.spec import StudyConfig
from deploybench.study.store import StudyStore
from deploybench.study.trial import TrialContext, TrialEvents, TrialFiles, TrialJob, run_served_trial
from deploybench.study.variants_step import evaluate_study_variants


@register
class LocalExecutor(Executor):
    name = "local"
    runs_runoffs = True  # its trials run here, so it can serve several at once

    def __init__(self, config: StudyConfig) -> None:
        """Detect and price this machine before anything is built: a price it lacks fails here."""
        super().__init__(config)
        self.profile: MachineProfile = detect_machine()
        self.info = resolve_machine(config.machine, self.profile, socket.gethostname())

    def targets(self) -> list[MachineTarget]:
        return [MachineTarget()]

    def run_runoff(
        self,
        ctx: TrialContext,
        jobs: list[TrialJob],
        plan: RunoffPlan,
        store: StudyStore,
        events: TrialEvents,
    ) -> list[TrialRecord]:
        """Round 2 as a paired runoff: every contender served here at once, visited in turns."""
        return run_runoff(ctx, jobs, plan, store, events)

    def prepare(
        self, requests: list[PrepareRequest], cache_dir: Path | None, on_stage: Callable[[str], None]
    ) -> Iterator[Prepared]:
        for request in requests:
            environment = fingerprint(self.profile)
            raw = None
            if request.need_variants:
                raw = evaluate_study_variants(self.config, cache_dir, on_stage).raw
            yield Prepared(request.target, environment, raw, stack_offers(self.config.stacks))

    def machine_info(self, target: MachineTarget, environment: dict[str, Any]) -> MachineInfo:
        return self.info

    def run_trials(
        self,
        ctx: TrialContext,
        jobs: list[TrialJob],
        store: StudyStore,
        events: TrialEvents,
    ) -> Iterator[TrialRecord]:
        for job in jobs:
            if ctx.stop.is_set():
                raise KeyboardInterrupt
            events.on_start(job, None)
            files = TrialFiles(store.log_path(job.trial_id), store.stack_dir(job.trial_id))
            record = run_served_trial(ctx, job, files, events.on_live, events.on_stage)
            if ctx.stop.is_set():
                raise KeyboardInterrupt  # a trial cut short by Ctrl-C is not recorded: it reruns on resume
            yield record
