"""This machine: variants in the study process, then one trial after another on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from deploybench.results import MachineInfo, TrialRecord
from deploybench.study.environment import fingerprint, stack_offers
from deploybench.study.executors.base import (
    Executor,
    MachineTarget,
    Prepared,
    PrepareRequest,
    TrialEvents,
    register,
)
from deploybench.study.spec import StudyConfig
from deploybench.study.store import StudyStore
from deploybench.study.trial import TrialContext, TrialFiles, TrialJob, run_served_trial


def resolve_machine(config: StudyConfig, env: dict[str, Any]) -> MachineInfo:
    """Label and price the machine: explicit price wins, else the catalogue's price for the instance."""
    from deploybench.pricing import resolve_price

    spec = config.machine
    price = spec.price_per_hour
    if price is None and spec.instance:
        price = resolve_price(spec.instance)
    label = spec.label or spec.instance or str(env.get("hostname", "local"))
    return MachineInfo(
        label=label,
        instance=spec.instance,
        price_per_hour=price,
        cpu_model=env.get("cpu_model"),
        cores=env.get("cores"),
        gpu=env.get("gpu"),
    )


@register
class LocalExecutor(Executor):
    name = "local"

    def targets(self) -> list[MachineTarget]:
        return [MachineTarget()]

    def prepare(
        self, requests: list[PrepareRequest], cache_dir: Path | None, on_stage: Callable[[str], None]
    ) -> Iterator[Prepared]:
        from deploybench.study.variants_step import evaluate_study_variants

        for request in requests:
            environment = fingerprint()
            raw = None
            if request.need_variants:
                raw = evaluate_study_variants(self.config, cache_dir, on_stage).raw
            yield Prepared(request.target, environment, raw, stack_offers(self.config.stacks))

    def machine_info(self, target: MachineTarget, environment: dict[str, Any]) -> MachineInfo:
        return resolve_machine(self.config, environment)

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
