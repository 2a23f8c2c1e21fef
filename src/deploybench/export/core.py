"""export_candidate: study folder in, deployable archive out (see the package docstring).

The target defaults to the one that runs the chosen trial's serving stack (targets.py), so the
archive deploys the configuration that was measured; with the round trip on, the archive is served
the way its target runs it, beside the trial's configuration, and its README quotes that figure.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from deploybench.config import ModelSpec, StrictModel
from deploybench.export.artifact import Built, lay_out_compiled, rebuild
from deploybench.export.choose import Choice, ExportError, choose_candidate
from deploybench.export.container import lay_out_container
from deploybench.export.package import MANIFEST, render, staging, write_archive, write_manifest
from deploybench.export.rayserve import lay_out_rayserve
from deploybench.export.readme import container_notes, describe_files, manifest, readme_context
from deploybench.export.roundtrip import RoundTrip, RoundTripPlan, measure_round_trip
from deploybench.export.runtimes import exportable_backends
from deploybench.export.targets import CONTAINER, SAGEMAKER_PYTORCH, SAGEMAKER_RAYSERVE, TARGETS, stack_target
from deploybench.inputs.payload import default_payload_path, read_payloads
from deploybench.models.loaded import LoadedModel
from deploybench.models.sagemaker import is_sagemaker_source, model_folder
from deploybench.models.sources import load_model
from deploybench.report.study import StudyData, load_study
from deploybench.report.traffic import write_candidate_policies
from deploybench.results import Candidate
from deploybench.study.spec import StudyConfig, launch_spec, study_model_spec

REFERENCE = "eager"
RAYSERVE_NOTES = [
    "sagemaker-rayserve: config.yaml and deployment.py at the root run the measured configuration in AWS's "
    "Ray Serve inference container; rayservice.yaml runs the same application on KubeRay (upload this "
    "archive's files as a zip and set working_dir); locally: deploybench serve ARCHIVE",
]
CONTAINER_NOTES = [
    "container: docker build the unpacked archive, push the image, and deploy it with this model.tar.gz "
    "(SageMaker runs `docker run IMAGE serve`); locally: deploybench serve ARCHIVE runs its entrypoint",
]


class ExportResult(StrictModel):
    """What was written, for which trial and target, and the numbers its README quotes."""

    archive: Path
    trial_id: str
    backend: str
    precision: str
    target: str = Field(SAGEMAKER_PYTORCH, description="the deployment target the archive is for")
    target_reason: str = Field("", description="why this target: asked for, or the trial's serving stack")
    runtime: str | None = Field(None, description="None: the user's own archive, unchanged (eager won)")
    files: list[str]
    env: dict[str, str]
    throughput_rps: float | None = None
    p99_ms: float | None = None
    cost_per_1m: float | None = None
    artifact: str = ""
    parity: str = ""
    round_trip: RoundTrip | None = Field(
        None, description="the archive served as its target runs it, measured"
    )
    notes: list[str] = Field(default_factory=list)


POLICIES = "autoscaling"
POLICIES_NOTE = (
    f"{POLICIES}/: the autoscaling policies (SageMaker, Ray Serve, KServe, Kubernetes HPA) that the study's "
    "last `deploybench report --traffic` derived for this candidate from its measured rate per instance"
)


def study_config(study: StudyData) -> StudyConfig:
    try:
        return StudyConfig.model_validate(study.config)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ExportError(f"{study.root}/study.yaml: not a study configuration ({first['msg']})") from exc


def _check_exportable(choice: Choice, exportable: set[str]) -> None:
    backend = choice.trial.candidate.backend
    if backend not in exportable:
        raise ExportError(
            f"{choice.trial.trial_id}: {backend} runs inside deploybench's own process and has no "
            f"standalone artifact; export one of: {', '.join(sorted(exportable))}"
        )


def default_target(candidate: Candidate) -> tuple[str, str]:
    """(target, why) for a trial: the target that runs its stack as measured (a model file or archive
    included: the container ships it, export/shipped.py)."""
    target = stack_target(candidate.stack)
    if target is None:
        raise ExportError(
            f"{candidate.key}: measured on {candidate.stack}, which no export target runs as measured "
            f"(targets: {', '.join(TARGETS)}); pass --target to deploy its backend elsewhere, where its "
            "figures were not measured"
        )
    why = f"the default for a trial measured on {candidate.stack}"
    if target == CONTAINER:
        why = f"{why} (deploybench's own server): the container runs the same server and command"
    return target, why


def _choose(
    study: StudyData, spec: ModelSpec, trial_id: str | None, target: str | None
) -> tuple[Choice, str, str]:
    """The trial, the target and why: the container runs any backend the study served; the archives
    only those with a standalone artifact (or eager for a SageMaker source: the user's archive)."""
    archives = exportable_backends() | ({REFERENCE} if is_sagemaker_source(spec.source) else set())
    served = {trial.candidate.backend for trial in study.trials}
    why = "asked for with --target"
    if target is None:
        first = choose_candidate(study, trial_id, served)
        target, why = default_target(first.trial.candidate)
    exportable = served if target == CONTAINER else archives
    choice = choose_candidate(study, trial_id, exportable)
    _check_exportable(choice, exportable)
    return choice, target, why


def expresses_not(target: str, candidate: Candidate) -> str:
    """Why `target` does not run the trial's configuration as measured ("" when it does): another
    stack than the trial's, or what the SageMaker PyTorch toolkit cannot run (batching, runtime knobs)."""
    reasons = []
    if stack_target(candidate.stack) != target:
        reasons.append(f"the trial was measured on {candidate.stack}")
    if target == SAGEMAKER_PYTORCH:
        reasons += container_notes(candidate)
    return "; ".join(reasons)


def _readme_name(root: Path) -> str:
    return "README.deploybench.md" if (root / "README.md").exists() else "README.md"


def _lay_out_archive(
    root: Path,
    target: str,
    model: LoadedModel,
    candidate: Candidate,
    config: StudyConfig,
    cache_dir: Path | None,
) -> Built | None:
    """The variant's files: the user's archive (eager), else the rebuilt, re-checked artifact; the
    container ships its cache entries instead, and re-checks parity where an artifact exists."""
    if target == CONTAINER:
        exportable = candidate.backend in exportable_backends()
        return rebuild(model, candidate, config.parity, cache_dir) if exportable else None
    if candidate.backend == REFERENCE and target != SAGEMAKER_PYTORCH:
        raise ExportError(f"{candidate.key}: {target} needs a compiled artifact; eager's is your archive")
    if candidate.backend == REFERENCE:  # eager won: the user's own archive is the deployment
        shutil.copytree(model_folder(model.spec.source), root, dirs_exist_ok=True)
        return None
    built = rebuild(model, candidate, config.parity, cache_dir)
    lay_out_compiled(root, model, candidate, built)
    return built


def _lay_out_target(
    root: Path,
    target: str,
    model: LoadedModel,
    study: StudyData,
    context: dict[str, Any],
    cache_dir: Path | None,
) -> None:
    """The target's own files beside the archive's; notes the SageMaker PyTorch container needs go."""
    candidate = context["candidate"]
    pytorch_only = set(container_notes(candidate))
    if target == SAGEMAKER_RAYSERVE:
        lay_out_rayserve(root, model, candidate, context)
        context["notes"] = [n for n in context["notes"] if n not in pytorch_only] + RAYSERVE_NOTES
    elif target == CONTAINER:
        spec = launch_spec(study_config(study), candidate)
        context["container"] = lay_out_container(root, spec, candidate, cache_dir, study.environment)
        context["env"] = {}  # every knob is in the entrypoint's command
        context["notes"] = [n for n in context["notes"] if n not in pytorch_only] + CONTAINER_NOTES


def _write(
    root: Path,
    out: Path,
    study: StudyData,
    choice: Choice,
    model: LoadedModel,
    built: Built | None,
    context: dict[str, Any],
) -> list[str]:
    readme = _readme_name(root) if "readme" not in context else context["readme"]
    context["readme"] = readme
    names = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != readme]
    context["files"] = describe_files(sorted([*names, readme, MANIFEST]), model, built)
    (root / readme).write_text(render("README.md.j2", context))
    write_manifest(root, manifest(study, choice, model, built, context))
    return write_archive(root, out)


def export_candidate(
    study_dir: Path,
    out: Path,
    *,
    trial_id: str | None = None,
    cache_dir: Path | None = None,
    target: str | None = None,
    round_trip: RoundTripPlan | None = None,
    on_progress: Callable[[str], None] = lambda message: None,
) -> ExportResult:
    """Write `out` for the chosen candidate of the study in `study_dir`; ExportError says why not.
    `target` None: the target of the trial's serving stack (default_target); `round_trip`: serve the
    archive as its target runs it beside the trial's configuration and quote that figure."""
    if target is not None and target not in TARGETS:
        raise ExportError(f"unknown export target {target!r}; known: {', '.join(TARGETS)}")
    study = load_study(study_dir)
    config = study_config(study)
    spec = study_model_spec(config)
    choice, target, why = _choose(study, spec, trial_id, target)
    candidate = choice.trial.candidate
    on_progress(f"target {target}: {why}")
    on_progress(f"loading {spec.source}")
    model = load_model(spec)
    with staging() as root:
        if candidate.backend != REFERENCE:
            on_progress(f"{candidate.backend}: rebuilding from the artifact cache, re-checking parity")
        built = _lay_out_archive(root, target, model, candidate, config, cache_dir)
        context = readme_context(study, config, choice, model, built, out)
        context.update(target=target, target_reason=why, candidate=candidate, container=None, round_trip=None)
        context["expresses_not"] = expresses_not(target, candidate)
        context["expresses"] = not context["expresses_not"]
        _lay_out_target(root, target, model, study, context, cache_dir)
        if write_candidate_policies(study_dir, root / POLICIES, choice.trial.trial_id):
            context["notes"].append(POLICIES_NOTE)
        files = _write(root, out, study, choice, model, built, context)
        if round_trip is not None:
            bodies = read_payloads(config.payload or default_payload_path(), config.content_type)
            context["round_trip"] = measure_round_trip(
                out, target, spec, candidate, bodies, content_type=config.content_type, env=context["env"],
                cache_dir=cache_dir, plan=round_trip, on_progress=on_progress,
            )  # fmt: skip
            files = _write(root, out, study, choice, model, built, context)
    return _result(out, choice, built, context, files)


def _result(
    out: Path, choice: Choice, built: Built | None, context: dict[str, Any], files: list[str]
) -> ExportResult:
    return ExportResult(
        archive=out,
        trial_id=choice.trial.trial_id,
        backend=choice.trial.candidate.backend,
        precision=context["precision"],
        target=context["target"],
        target_reason=context["target_reason"],
        runtime=context["runtime"],
        files=files,
        env=context["env"],
        throughput_rps=context["throughput"],
        p99_ms=context["p99"],
        cost_per_1m=context["cost"],
        artifact=_artifact(built, context["target"]),
        parity=context["parity"],
        round_trip=context["round_trip"],
        notes=context["notes"],
    )


def _artifact(built: Built | None, target: str) -> str:
    shipped = "; shipped as the server's artifact cache entries (cache/)" if target == CONTAINER else ""
    if built is None:
        return "the study's artifact cache" + shipped if target == CONTAINER else "your archive, unchanged"
    return built.artifact + shipped
