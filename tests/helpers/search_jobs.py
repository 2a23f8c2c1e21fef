"""A served job as the plan hands it to the search: the one builder the search's tests share."""

from __future__ import annotations

from deploybench.config import RuntimeKnobs
from deploybench.results import DEFAULT_STACK, Candidate, MachineInfo
from deploybench.study.plan import PlannedTrial
from deploybench.study.trial import TrialJob

MACHINE = MachineInfo(label="ci")


def served_job(
    backend: str = "onnxruntime",
    *,
    stack: str = DEFAULT_STACK,
    workers: int = 1,
    threads: int | None = None,
    batch: int = 1,
    delay_ms: float | None = None,
    runtime: RuntimeKnobs | None = None,
) -> TrialJob:
    """threads: 2 // workers unless given; delay_ms: 2 ms when batching unless given."""
    candidate = Candidate(
        backend=backend,
        stack=stack,
        workers=workers,
        threads=threads if threads is not None else max(1, 2 // workers),
        max_batch_size=batch,
        max_delay_ms=delay_ms if delay_ms is not None else 2.0 * (batch > 1),
        runtime=runtime or RuntimeKnobs(),
    )
    return TrialJob(candidate.key, PlannedTrial(candidate, "serve"), MACHINE)
