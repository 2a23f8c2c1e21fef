"""The process a cluster node runs for one piece of a study: `python -m ...node_main WORKDIR`.

It is deploybench's own single-node path (the same code the local executor calls), started fresh by the
Ray task with an environment the task chose (node.py), so Ray's worker settings never reach the
measurements. WORKDIR/job.json says what to do; events go out as JSON lines on the original stdout,
everything else the libraries print goes to stderr.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from deploybench.results import AccuracyReport, Candidate, MachineInfo, ParityReport
from deploybench.study.plan import PlannedTrial
from deploybench.study.spec import StudyConfig

SERVER_LOG = "server.log"
LIVE_INTERVAL_S = 1.0  # the driver's live line needs no more than one update a second


class EventWriter:
    """One JSON object per line; flushed at once so the task streams it while the work goes on."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._last_live = 0.0

    def send(self, event: str, **data: Any) -> None:
        self.stream.write(json.dumps({"event": event, **data}, default=str) + "\n")
        self.stream.flush()

    def stage(self, message: str) -> None:
        self.send("stage", message=message)

    def live(self, update: Any) -> None:
        if time.monotonic() - self._last_live >= LIVE_INTERVAL_S:
            self._last_live = time.monotonic()
            self.send("live", stats=vars(update))


def planned_trial_json(trial: PlannedTrial) -> dict[str, Any]:
    return {
        "candidate": trial.candidate.model_dump(mode="json"),
        "action": trial.action,
        "reason": trial.reason,
        "precision": trial.precision,
    }


def _evaluate(job: dict[str, Any], config: StudyConfig, events: EventWriter) -> None:
    # lazy: after stdout is redirected: what the libraries print must not reach the event stream
    from deploybench.study.environment import fingerprint, stack_offers
    from deploybench.study.variants_step import evaluate_study_variants

    environment = fingerprint()
    events.send("stage", message=f"{environment['cores']} cores, {environment['cpu_model']}")
    raw = None
    if job["need_variants"]:
        cache_dir = Path(job["cache_dir"]) if job.get("cache_dir") else None
        raw = evaluate_study_variants(config, cache_dir, events.stage).raw
    stacks = [
        {"name": o.name, "unavailable": o.unavailable, "backends": sorted(o.backends) if o.backends else None}
        for o in stack_offers(config.stacks)
    ]
    events.send("prepared", environment=environment, variants=raw, stacks=stacks)


def _trial(job: dict[str, Any], config: StudyConfig, workdir: Path, events: EventWriter) -> None:
    # lazy: after stdout is redirected (see _evaluate)
    from deploybench.study.trial import TrialContext, TrialFiles, TrialJob, run_served_trial

    parity = ParityReport.model_validate(job["parity"]) if job.get("parity") else None
    accuracy = AccuracyReport.model_validate(job["accuracy"]) if job.get("accuracy") else None
    planned = job["trial"]
    trial = PlannedTrial(
        Candidate.model_validate(planned["candidate"]),
        planned["action"],
        planned["reason"],
        planned["precision"],
    )
    machine = MachineInfo.model_validate(job["machine"])
    ctx = TrialContext(
        config,
        job["weights"],
        [base64.b64decode(body) for body in job["payloads"]],
        Path(job["cache_dir"]) if job.get("cache_dir") else None,
        threading.Event(),
    )
    files = TrialFiles(workdir / SERVER_LOG, workdir / "stack")
    trial_job = TrialJob(job["trial_id"], trial, machine, parity, accuracy)
    record = run_served_trial(ctx, trial_job, files, events.live, events.stage)
    events.send("record", record=record.model_dump(mode="json"))


def main(workdir: Path) -> None:
    events = EventWriter(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)  # whatever a library prints lands in the stderr log, never in the event stream
    sys.stdout = sys.stderr
    job = json.loads((workdir / "job.json").read_text(encoding="utf-8"))
    config = StudyConfig.model_validate(job["config"])
    if job["kind"] == "evaluate":
        _evaluate(job, config, events)
    else:
        _trial(job, config, workdir, events)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
