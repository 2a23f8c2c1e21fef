"""What an exported archive says about itself: README.md (for people) and deploybench-export.json.

Both quote the trial as the recommendation judged it (throughput and p99 at its operating point,
cost per 1M), the environment that reproduces its server configuration on SageMaker's PyTorch
container, and where the artifact came from.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from deploybench.cache import installed_versions
from deploybench.export.artifact import Built
from deploybench.export.choose import Choice
from deploybench.export.package import MANIFEST
from deploybench.models.loaded import LoadedModel
from deploybench.pricing.catalogue import cost_per_million, load_catalogue, sagemaker_hosting
from deploybench.report.study import StudyData
from deploybench.results import Candidate
from deploybench.study.spec import StudyConfig
from deploybench.study.summary import headline_point


def sagemaker_env(candidate: Candidate) -> dict[str, str]:
    """The SageMaker PyTorch container's settings for the measured workers and threads, by the
    toolkit's own rules: once any SAGEMAKER_TS_* variable is set it writes a per-model TorchServe
    entry whose minWorkers/maxWorkers (default 1) override SAGEMAKER_MODEL_SERVER_WORKERS, so both
    carry the worker count; it parses every value with int(). No batch variables: the toolkit calls
    the handler once per request of a TorchServe batch, so batching could not run as measured."""
    workers = str(candidate.workers)
    return {
        "SAGEMAKER_MODEL_SERVER_WORKERS": workers,
        "SAGEMAKER_TS_MIN_WORKERS": workers,
        "SAGEMAKER_TS_MAX_WORKERS": workers,
        "OMP_NUM_THREADS": str(candidate.threads),
    }


def container_notes(candidate: Candidate) -> list[str]:
    """What the SageMaker PyTorch container cannot run as measured, said where the archive is read."""
    notes = []
    if candidate.max_batch_size > 1:
        notes.append(
            f"measured with dynamic batching (up to {candidate.max_batch_size} within "
            f"{candidate.max_delay_ms:g} ms), which the SageMaker PyTorch toolkit cannot run: it calls the "
            "handler once per request of a TorchServe batch, so this archive serves batch 1 and its "
            "throughput will differ from the measured figure"
        )
    defaults = type(candidate.runtime)().model_dump()
    changed = [name for name, value in candidate.runtime.model_dump().items() if value != defaults[name]]
    if changed:
        knobs = ", ".join(changed)
        notes.append(f"runtime knobs deploybench's server set and this container does not: {knobs}")
    if candidate.runtime.decoder != defaults["decoder"]:
        notes.append(
            f"measured with image bodies decoded by {candidate.runtime.decoder}; this archive's handler "
            "preprocesses with Pillow (the reference preprocessing), so its CPU per request differs"
        )
    return notes


def parity_text(choice: Choice, built: Built | None) -> str:
    recorded = choice.trial.parity
    text = recorded.verdict if recorded is not None else "not recorded"
    if recorded is not None and recorded.cosine_p10 is not None and recorded.top1_agreement is not None:
        text += f" (top-1 {recorded.top1_agreement:.0%}, centred cosine p10 {recorded.cosine_p10:.5f})"
    if built is not None:
        judged = f", judged as in the study on {built.parity.judged_on}" if built.parity.judged_on else ""
        text += f"; re-checked on the exported artifact: {built.parity.verdict}{judged}"
    return text


def hosting_facts(choice: Choice, rps: float | None) -> dict[str, Any]:
    """The SageMaker hosting type for the measured machine and, when it is the same machine (CPU
    family and vCPUs), the cost per 1M at its hosting price; else a note on what to choose."""
    machine = choice.trial.machine
    entry = sagemaker_hosting(load_catalogue(), machine.instance, machine.cpu_family, machine.cores)
    if entry is None:
        note = (
            f"no SageMaker hosting type in the price catalogue runs {machine.cpu_family or 'this CPU'} "
            f"with {machine.cores or 'as many'} vCPUs or more: choose one (deploybench prices --filter "
            "sagemaker) and measure there before you rely on these figures"
        )
        return {"instance": "YOUR-INSTANCE-TYPE", "hosting_cost": None, "hosting_notes": [note]}
    same = entry.vcpus == machine.cores
    facts = {"instance": entry.instance, "hosting_usd_per_hour": entry.usd_per_hour, "hosting_notes": []}
    facts["hosting_cost"] = cost_per_million(entry.usd_per_hour, rps) if same and rps else None
    if not same:
        facts["hosting_notes"].append(
            f"{entry.instance} ({entry.vcpus} vCPUs, ${entry.usd_per_hour}/hour, {entry.source} "
            f"{entry.date}) is the smallest SageMaker hosting type on this CPU family; the study "
            f"measured {machine.cores} vCPUs: measure on it before you rely on throughput or cost"
        )
    return facts


def _measured(choice: Choice) -> dict[str, Any]:
    """The operating point the recommendation judged, else the best point measured (flagged in notes)."""
    ev = choice.evaluation
    point = headline_point(choice.trial) if ev.throughput_rps is None else None
    rps = ev.throughput_rps or (point.throughput_rps if point else None)
    return {
        "throughput": rps,
        "concurrency": ev.concurrency if point is None else point.concurrency,
        "p99": ev.p99_ms if point is None else point.latency.p99_ms,
        "cost": ev.cost_per_1m
        if point is None
        else (cost_per_million(ev.usd_per_hour, rps) if ev.usd_per_hour and rps else None),
        "usd_per_hour": ev.usd_per_hour,
        "machine": ev.machine,
    }


def _generated_files(model: LoadedModel, built: Built) -> dict[str, str]:
    program = model.handler.program if model.handler is not None else "inference.py"
    kept = "runs your handler around it" if model.handler else "inlines the built-in vision pipeline"
    folder = "deploybench/" if model.handler is not None else ""
    files = {
        f"{folder}{name}": f"the {built.plan.runtime} artifact ({built.precision})"
        for name in built.plan.files
    }
    return {
        **files,
        "code/inference.py": f"generated: runs the artifact with {built.plan.runtime} and {kept}",
        "code/user_inference.py": f"your code/{program}, unchanged (every function you wrote runs)",
        "code/deploybench_standin.py": "the stand-in for your network the study served (runs the artifact)",
        "code/requirements.txt": built.plan.requirement,
        "code/labels.json": "the class names the JSON answers use",
    }


CONTAINER_FILES = {  # export/container.py's files; a folder is one line
    "Dockerfile": "builds the image: the measured library versions, this archive in /opt/ml/model, `serve`",
    "serve": "the entrypoint (`docker run IMAGE serve`): the study's own server command for this trial",
    "requirements.txt": "deploybench's dependencies pinned to the versions the study measured with",
    "deploybench-src/": "deploybench itself, the source that ran the export (on PYTHONPATH in the container)",
    "cache/": "the artifact cache entries the server reads: the measured artifact, never rebuilt",
    "torch-hub/": "the pretrained checkpoint the study's model loaded",
}


def describe_files(names: list[str], model: LoadedModel, built: Built | None) -> dict[str, str]:
    """Each archive member and what it is, for the README (a container's folders as one line each)."""
    known = {
        **(_generated_files(model, built) if built is not None else {}),
        **CONTAINER_FILES,
        MANIFEST: "where every number here comes from (study, trial, versions), machine-readable",
    }
    folders = [name for name in CONTAINER_FILES if name.endswith("/")]
    shown = []
    for name in names:
        folder = next((f for f in folders if name.startswith(f)), name)
        if folder not in shown:
            shown.append(folder)
    return {
        name: known.get(name, "this file" if name.startswith("README") else "yours, unchanged")
        for name in shown
    }


def readme_context(
    study: StudyData, config: StudyConfig, choice: Choice, model: LoadedModel, built: Built | None, out: Path
) -> dict[str, Any]:
    """Everything README.md.j2 shows (also the source of deploybench-export.json's numbers)."""
    candidate, trial = choice.trial.candidate, choice.trial
    torch = installed_versions(["torch"])["torch"]
    batching = (
        "off"
        if candidate.max_batch_size == 1
        else f"up to {candidate.max_batch_size} within {candidate.max_delay_ms:g} ms"
    )
    measured = _measured(choice)
    hosting = hosting_facts(choice, measured["throughput"])
    return {
        **measured,
        "label": choice.evaluation.label,
        "trial_id": trial.trial_id,
        "study": config.name,
        "model": trial.model,
        "weights": trial.weights,
        "cpu": trial.machine.cpu_model,
        "measured_at": trial.finished_at,
        "parity": parity_text(choice, built),
        "files": {},
        "runtime": built.plan.runtime if built else None,
        "backend": candidate.backend,
        "precision": built.precision if built else (trial.precision or "fp32"),
        "handler": model.handler,
        "requirement": built.plan.requirement if built else None,
        "workers": candidate.workers,
        "threads": candidate.threads,
        "batching": batching,
        "batch_size": candidate.max_batch_size,
        "max_delay_ms": f"{candidate.max_delay_ms:g}",
        "torch_version": torch,
        "framework_version": ".".join(torch.split("+")[0].split(".")[:2]),
        "archive_name": out.name,
        "env": sagemaker_env(candidate),
        "instance": hosting["instance"],
        "hosting_cost": hosting["hosting_cost"],
        "hosting_usd_per_hour": hosting.get("hosting_usd_per_hour"),
        "content_type": config.content_type,
        "notes": [
            *choice.notes,
            *container_notes(candidate),
            *(
                []
                if choice.evaluation.throughput_rps
                else ["no trusted operating point: the best point measured"]
            ),
            *([model.handler.summary] if model.handler is not None else []),
            *hosting["hosting_notes"],
        ],
    }


def manifest(
    study: StudyData, choice: Choice, model: LoadedModel, built: Built | None, context: dict[str, Any]
) -> dict[str, Any]:
    """deploybench-export.json: the provenance of every number in the README, machine-readable."""
    return {
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "study": str(study.root.resolve()),
        "trial_id": choice.trial.trial_id,
        "candidate": choice.trial.candidate.model_dump(),
        "model": model.name,
        "fingerprint": model.fingerprint,
        "input_shape": list(model.input_shape),
        "handler": model.handler.summary if model.handler is not None else None,
        "runtime": context["runtime"],
        "precision": context["precision"],
        "env": context["env"],
        "measured": {
            k: context[k] for k in ("throughput", "concurrency", "p99", "cost", "usd_per_hour", "machine")
        },
        "parity": context["parity"],
        "target": context.get("target"),
        "target_reason": context.get("target_reason"),
        "round_trip": context["round_trip"].model_dump() if context.get("round_trip") else None,
        "parity_at_export": built.parity.model_dump(mode="json") if built else None,
        "artifact": built.artifact if built else "the user's archive, unchanged",
        "versions": built.versions if built else {},
        "notes": context["notes"],
    }
