"""Rich progress for a study: candidates done / left with an ETA, and the current trial's live numbers.

The display shares the cores with the server under test, so it draws only when there is news (a
stage, a trial started or done, a live update at most once a second): no refresh thread.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from deploybench.cli.variants import render_table
from deploybench.load import LiveStats
from deploybench.results import MachineInfo, TrialRecord
from deploybench.study.runner import StudyProgress
from deploybench.study.trial import TrialJob
from deploybench.study.variants_step import VariantsOutcome


def describe_live(update: LiveStats) -> str:
    """One line from the load generator's live statistics for the current point."""
    return (
        f"{update.label} {update.phase}: {update.rate_rps:,.1f} req/s  p50 {update.p50_ms:,.1f} ms  "
        f"p99 {update.p99_ms:,.1f} ms  errors {update.errors}"
    )


class RichStudyProgress(StudyProgress):
    """StudyProgress that draws on a Rich console."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[live]}"),
            console=console,
            transient=False,
            auto_refresh=False,
        )
        self.task: Any = None
        self.last_draw = 0.0
        self.on_stage = self._stage
        self.on_machine = self._machine
        self.on_variants = self._variants
        self.on_plan = self._plan
        self.on_trial_start = self._start
        self.on_trial_done = self._done
        self.on_live = self._live

    def __enter__(self) -> RichStudyProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def _draw(self) -> None:
        self.last_draw = monotonic()
        self.progress.refresh()

    def _stage(self, message: str) -> None:
        self.progress.console.print(f"[cyan]•[/] {message}")

    def _machine(self, machine: MachineInfo) -> None:
        """What the measurements will be priced as, and why; a mismatch is shown before anything runs."""
        price = f"${machine.price_per_hour:g}/h" if machine.price_per_hour is not None else "no price"
        self.progress.console.print(
            f"[cyan]•[/] machine: {machine.cpu_model} ({machine.cpu_family or 'unknown family'}), "
            f"{machine.cores} vCPUs, {machine.memory_gib} GiB; priced as {machine.instance or machine.label} "
            f"at {price} ({machine.price_source})",
            soft_wrap=True,
        )
        for warning in machine.warnings:
            self.progress.console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)

    def _variants(self, outcome: VariantsOutcome) -> None:
        """The in-process table of `deploybench variants`: what each backend does before serving."""
        # lazy: variants.verify imports torch; the CLI module loads for every command
        from deploybench.variants.verify import VariantsReport

        report = VariantsReport.model_validate(outcome.raw)
        batch_sizes = tuple(sorted({t.batch for v in report.variants for t in v.timings})) or (1,)
        self.progress.console.print(render_table(report, batch_sizes))

    def _plan(self, jobs: list[TrialJob], done: set[str]) -> None:
        served = sum(1 for j in jobs if j.trial.action == "serve")
        self.progress.console.print(
            f"[cyan]•[/] plan: {len(jobs)} candidates, {served} to serve (the search decides which get "
            "the full load plan)" + (f"; {len(done)} already measured" if done else "")
        )
        self.task = self.progress.add_task("candidates", total=len(jobs), live="")
        self.progress.update(self.task, completed=sum(1 for j in jobs if j.trial_id in done))
        self._draw()

    def _start(self, job: TrialJob, node: str | None) -> None:
        """One trial at a time here; on a cluster, one per node at once, so say which node took it."""
        if node is not None:
            self.progress.console.print(f"  {'started':>8}  {job.trial_id}  on {node}")
        if self.task is not None:
            self.progress.update(self.task, description=job.trial_id, live="")
            self._draw()

    def _done(self, record: TrialRecord) -> None:
        peak = record.peak
        summary = f"{peak.throughput_rps:,.1f} req/s peak" if peak else (record.reason or record.status)
        node = record.machine.node_id
        where = f"  [dim]on node {node[:8]} ({record.machine.hostname})[/]" if node else ""
        self.progress.console.print(f"  {record.status:>8}  {record.trial_id}  {summary}{where}")
        if self.task is not None:
            self.progress.advance(self.task)
            self._draw()

    def _live(self, update: LiveStats) -> None:
        """Keep the newest numbers; draw them at most once a second."""
        if self.task is None:
            return
        self.progress.update(self.task, live=describe_live(update))
        if monotonic() - self.last_draw >= 1.0:
            self._draw()
