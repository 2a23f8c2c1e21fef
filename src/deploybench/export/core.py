"""export_candidate: study folder in, SageMaker archive out (see the package docstring)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from pydantic import Field, ValidationError

from deploybench.config import StrictModel
from deploybench.export.artifact import Built, lay_out_compiled, rebuild
from deploybench.export.choose import Choice, ExportError, choose_candidate
from deploybench.export.package import MANIFEST, render, staging, write_archive, write_manifest
from deploybench.export.rayserve import lay_out_rayserve
from deploybench.export.readme import container_notes, describe_files, manifest, readme_context
from deploybench.export.runtimes import exportable_backends
from deploybench.models.sagemaker import is_sagemaker_source, model_folder
from deploybench.models.sources import load_model
from deploybench.report.study import StudyData, load_study
from deploybench.study.spec import StudyConfig, study_model_spec

REFERENCE = "eager"
SAGEMAKER_PYTORCH = "sagemaker-pytorch"  # the SageMaker PyTorch (TorchServe) container's archive
SAGEMAKER_RAYSERVE = "sagemaker-rayserve"  # AWS's Ray Serve container's archive, and a KubeRay RayService
TARGETS = (SAGEMAKER_PYTORCH, SAGEMAKER_RAYSERVE)
RAYSERVE_NOTES = [
    "sagemaker-rayserve: config.yaml and deployment.py at the root run the measured configuration in AWS's "
    "Ray Serve inference container; rayservice.yaml runs the same application on KubeRay (upload this "
    "archive's files as a zip and set working_dir); locally: deploybench serve ARCHIVE",
]


class ExportResult(StrictModel):
    """What was written, for which trial, and the numbers its README quotes."""

    archive: Path
    trial_id: str
    backend: str
    precision: str
    runtime: str | None = Field(None, description="None: the user's own archive, unchanged (eager won)")
    files: list[str]
    env: dict[str, str]
    throughput_rps: float | None = None
    p99_ms: float | None = None
    cost_per_1m: float | None = None
    artifact: str = ""
    parity: str = ""
    notes: list[str] = Field(default_factory=list)


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


def _readme_name(root: Path) -> str:
    return "README.deploybench.md" if (root / "README.md").exists() else "README.md"


def export_candidate(
    study_dir: Path,
    out: Path,
    *,
    trial_id: str | None = None,
    cache_dir: Path | None = None,
    target: str = SAGEMAKER_PYTORCH,
    on_progress: Callable[[str], None] = lambda message: None,
) -> ExportResult:
    """Write `out` for the chosen candidate of the study in `study_dir`; ExportError says why not."""
    if target not in TARGETS:
        raise ExportError(f"unknown export target {target!r}; known: {', '.join(TARGETS)}")
    study = load_study(study_dir)
    config = study_config(study)
    spec = study_model_spec(config)
    exportable = exportable_backends() | ({REFERENCE} if is_sagemaker_source(spec.source) else set())
    choice = choose_candidate(study, trial_id, exportable)
    _check_exportable(choice, exportable)
    candidate = choice.trial.candidate
    on_progress(f"loading {spec.source}")
    model = load_model(spec)
    built: Built | None = None
    with staging() as root:
        if candidate.backend == REFERENCE and target != SAGEMAKER_PYTORCH:
            raise ExportError(f"{candidate.key}: {target} needs a compiled artifact; eager's is your archive")
        if candidate.backend == REFERENCE:  # eager won: the user's own archive is the deployment
            shutil.copytree(model_folder(spec.source), root, dirs_exist_ok=True)
        else:
            on_progress(f"{candidate.backend}: rebuilding from the artifact cache, re-checking parity")
            built = rebuild(model, candidate, config.parity, cache_dir)
            lay_out_compiled(root, model, candidate, built)
        readme = _readme_name(root)
        context = readme_context(study, config, choice, model, built, out)
        if target == SAGEMAKER_RAYSERVE:
            lay_out_rayserve(root, model, candidate, context)
            pytorch_only = set(container_notes(candidate))  # Ray Serve runs the batching and threads
            context["notes"] = [n for n in context["notes"] if n not in pytorch_only] + RAYSERVE_NOTES
        names = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        context["files"] = describe_files(sorted([*names, readme, MANIFEST]), model, built)
        (root / readme).write_text(render("README.md.j2", context))
        write_manifest(root, manifest(study, choice, model, built, context))
        files = write_archive(root, out)
    return ExportResult(
        archive=out,
        trial_id=choice.trial.trial_id,
        backend=candidate.backend,
        precision=context["precision"],
        runtime=context["runtime"],
        files=files,
        env=context["env"],
        throughput_rps=context["throughput"],
        p99_ms=context["p99"],
        cost_per_1m=context["cost"],
        artifact=built.artifact if built else "your archive, unchanged",
        parity=context["parity"],
        notes=context["notes"],
    )
