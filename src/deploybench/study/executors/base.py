"""Executor: where a study's work runs. The study (runner.py) decides what to measure; an executor
prepares each machine (environment, in-process variants) and runs the trials there.

Both implementations return the same TrialRecord, so the study folder, resume, report and compare do
not know which one ran. Adding one means one new module in this package with one class decorated by
@register, listed in __init__._EXECUTOR_MODULES.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from deploybench.results import MachineInfo, TrialRecord
from deploybench.study.plan import StackOffer
from deploybench.study.spec import StudyConfig
from deploybench.study.store import StudyStore
from deploybench.study.trial import TrialContext, TrialEvents, TrialJob

if TYPE_CHECKING:
    from deploybench.study.runoff import RunoffPlan


class ExecutorError(ValueError):
    """The study cannot run where it was asked to (no cluster, a machine type it lacks, ...)."""


@dataclass(frozen=True)
class MachineTarget:
    """A machine the study measures. key None: this machine, with today's single-machine folder layout;
    else the instance-type label of cluster nodes, which also prefixes its trial ids."""

    key: str | None = None
    price_per_hour: float | None = None

    def trial_id(self, candidate_key: str) -> str:
        return candidate_key if self.key is None else f"{self.key}/{candidate_key}"


@dataclass
class Prepared:
    """A machine ready for trials: its fingerprint and, when asked for, its variants evaluation.
    error: why the machine could not be prepared (its trials are left for a rerun)."""

    target: MachineTarget
    environment: dict[str, Any] = field(default_factory=dict)
    variants_raw: dict[str, Any] | None = None
    stacks: list[StackOffer] = field(default_factory=list)  # the serving stacks this machine offers
    error: str | None = None


@dataclass(frozen=True)
class PrepareRequest:
    target: MachineTarget
    need_variants: bool


class Executor(abc.ABC):
    """Runs a study's machine preparation and trials; a context manager around its connection."""

    name: ClassVar[str]

    def __init__(self, config: StudyConfig) -> None:
        self.config = config
        self.unfinished: list[str] = []  # why some trials did not run (left for a rerun), one line each

    def __enter__(self) -> Executor:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:  # noqa: B027 - most executors have nothing to connect to
        """Connect to wherever the work runs (nothing to do for this machine)."""

    def close(self) -> None:  # noqa: B027
        """Let go of it."""

    @abc.abstractmethod
    def targets(self) -> list[MachineTarget]:
        """The machines the study measures; raises ExecutorError when one is not there."""

    @abc.abstractmethod
    def prepare(
        self, requests: list[PrepareRequest], cache_dir: Path | None, on_stage: Callable[[str], None]
    ) -> Iterator[Prepared]:
        """Fingerprint each machine and, where asked, evaluate the variants on it; yields as each is done."""

    @abc.abstractmethod
    def machine_info(self, target: MachineTarget, environment: dict[str, Any]) -> MachineInfo:
        """The label and price recorded with the machine's trials."""

    runs_runoffs: ClassVar[bool] = False  # serves several candidates at once (search round 2's runoff)

    def run_runoff(
        self,
        ctx: TrialContext,
        jobs: list[TrialJob],
        plan: RunoffPlan,
        store: StudyStore,
        events: TrialEvents,
    ) -> list[TrialRecord]:
        """Search round 2 as a paired runoff (study/runoff.py), for executors whose trials run on this
        machine (runs_runoffs, which override this); the others run round 2 one trial after another."""
        raise NotImplementedError(f"the {self.name} executor runs round 2 one trial after another")

    @abc.abstractmethod
    def run_trials(
        self,
        ctx: TrialContext,
        jobs: list[TrialJob],
        store: StudyStore,
        events: TrialEvents,
    ) -> Iterator[TrialRecord]:
        """Run the served trials, yielding each record as it finishes (logs go to the study folder);
        KeyboardInterrupt once ctx.stop is set (a trial cut short is not yielded: it reruns on resume)."""


_REGISTRY: dict[str, type[Executor]] = {}


def register(cls: type[Executor]) -> type[Executor]:
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Executor]]:
    return dict(_REGISTRY)
