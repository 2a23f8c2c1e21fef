"""Where each candidate can be deployed as measured: the export targets' rules, as pure functions.

One rule per target, on the candidate and the model's source only (no model loaded, no torch), so
the report can say for every candidate which targets express it and why the others do not, and
`deploybench export` refuses by the same rules (export/container.py, export/rayserve.py,
export/readme.py call these). What needs the user's code loaded (a handler's function signatures
for Ray Serve) is checked at export time only.
"""

from __future__ import annotations

from collections.abc import Sequence

from deploybench.recommend.records import Evaluation
from deploybench.results import DEFAULT_STACK, Candidate, TrialRecord
from deploybench.sagemaker.archive import has_handler

CONTAINER, SAGEMAKER_PYTORCH, SAGEMAKER_RAYSERVE = "container", "sagemaker-pytorch", "sagemaker-rayserve"
# backends with a standalone artifact the SageMaker archives load (export/runtimes.py's exporters;
# tests/export keep the two equal)
ARTIFACT_BACKENDS = frozenset(
    {"onnxruntime", "onnxruntime-int8", "openvino", "openvino-bf16", "openvino-int8", "torchscript"}
)
REFERENCE = "eager"


def changed_runtime_knobs(candidate: Candidate) -> list[str]:
    """The runtime knobs held off their defaults: only deploybench's own server sets them."""
    defaults = type(candidate.runtime)().model_dump()
    return [name for name, value in candidate.runtime.model_dump().items() if value != defaults[name]]


def container_refusal(candidate: Candidate) -> str | None:
    """Why the container cannot run the candidate as measured (None: it can).

    It runs deploybench's server, so only trials measured on it. Any model that server ran travels:
    a model file, archive (its own inference.py) or module, a weights file and the calibration photos
    are shipped in the export and its artifacts are keyed by content, not path (export/shipped.py);
    export itself refuses what is no longer on the machine, or a module of an installed package."""
    if candidate.stack != DEFAULT_STACK:
        return f"measured on {candidate.stack}; the container runs deploybench's own server"
    return None


def rayserve_refusal(candidate: Candidate, handler: bool) -> str | None:
    """Why Ray Serve cannot run it as measured, by knobs (None: it can, unless a handler's own
    functions forbid it: export/rayserve.py checks those with the code loaded)."""
    if candidate.backend not in ARTIFACT_BACKENDS:
        return f"{candidate.backend} has no standalone artifact to load"
    changed = changed_runtime_knobs(candidate)
    if changed:
        return f"runtime knobs only deploybench's server sets: {', '.join(changed)}"
    if handler and candidate.max_batch_size > 1:
        return (
            "batching behind your per-request handler was measured with deploybench's server, which "
            "gathers your handler's network calls; Ray Serve would call it per request"
        )
    return None


def pytorch_refusal(candidate: Candidate, handler: bool) -> str | None:
    """Why the SageMaker PyTorch container cannot run it as measured (None: it can): it calls the
    handler once per request of a TorchServe batch, and sets no runtime knob."""
    if candidate.backend not in ARTIFACT_BACKENDS and not (handler and candidate.backend == REFERENCE):
        return f"{candidate.backend} has no standalone artifact to load"
    if candidate.max_batch_size > 1:
        return "the SageMaker PyTorch toolkit cannot run dynamic batching (one handler call per request)"
    changed = changed_runtime_knobs(candidate)
    if changed:
        return f"runtime knobs only deploybench's server sets: {', '.join(changed)}"
    return None


def deployable_as(candidate: Candidate, source: str) -> dict[str, str | None]:
    """Every export target: None where it runs the candidate as measured, else why not."""
    handler = has_handler(source)
    return {
        CONTAINER: container_refusal(candidate),
        SAGEMAKER_RAYSERVE: rayserve_refusal(candidate, handler),
        SAGEMAKER_PYTORCH: pytorch_refusal(candidate, handler),
    }


def deployable_text(verdicts: dict[str, str | None]) -> str:
    """'container, sagemaker-rayserve' (the targets that express it), or '—' for none."""
    return ", ".join(target for target, why in verdicts.items() if why is None) or "—"


def verdicts_by_trial(
    evaluations: Sequence[Evaluation], trials: Sequence[TrialRecord]
) -> dict[str, dict[str, str | None]]:
    """deployable_as for every evaluated trial, by trial id (the report's JSON and summary)."""
    by_id = {trial.trial_id: trial for trial in trials}
    return {
        ev.trial_id: deployable_as(by_id[ev.trial_id].candidate, by_id[ev.trial_id].model)
        for ev in evaluations
        if ev.trial_id in by_id
    }


def deployable_section(evaluations: Sequence[Evaluation], verdicts: dict[str, dict[str, str | None]]) -> str:
    """summary.md's table: for each served candidate, the targets that deploy it as measured, and
    why each other one does not."""
    rows = deployable_rows(evaluations, verdicts)
    if not rows:
        return ""
    lines = [
        "",
        "## Deployable as measured",
        "",
        "| candidate | deployable as | not as measured |",
        "|---|---|---|",
    ]
    for row in rows:
        cells = [row["candidate"], row["deployable"], row["refused"]]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join([*lines, ""]) + "\n"


def deployable_rows(
    evaluations: Sequence[Evaluation], verdicts: dict[str, dict[str, str | None]]
) -> list[dict[str, str]]:
    """Each served candidate: its label, the targets that deploy it as measured, why the others do not
    (the report's HTML section and summary.md's table)."""
    rows = []
    for ev in evaluations:
        if ev.status != "ok" or ev.trial_id not in verdicts:
            continue
        found = verdicts[ev.trial_id]
        refused = "; ".join(f"{target}: {why}" for target, why in found.items() if why is not None) or "—"
        rows.append({"candidate": ev.label, "deployable": deployable_text(found), "refused": refused})
    return rows
