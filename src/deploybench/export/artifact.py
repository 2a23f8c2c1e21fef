"""The exported variant: rebuilt from the artifact cache, re-checked against eager, laid out as an archive.

The rebuild uses the study's model spec and the trial's thread count, so its cache key is the
study's and the file is the one that was served and measured (a cleared cache rebuilds it, and the
README says so). Parity is checked again on the rebuilt artifact with the study's own gate.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploybench.backends.base import Variant
from deploybench.backends.build import build_variant
from deploybench.config import ParityThresholds
from deploybench.export.choose import ExportError
from deploybench.export.package import copy_user_code, copy_user_files, merged_requirements, render
from deploybench.export.runtimes import RuntimePlan, plan_for
from deploybench.models.loaded import LoadedModel
from deploybench.models.sagemaker import model_folder
from deploybench.results import Candidate, ParityReport
from deploybench.sagemaker import standin
from deploybench.sagemaker.toolkit import torch_model_file
from deploybench.variants.parity import predict_in_chunks, served_batch_sizes
from deploybench.variants.stand_in import StandIn, judge_variant, needs_stand_in
from deploybench.variants.verify import PARITY_INPUTS, REFERENCE, parity_set, through_handler

TOP_K = 5
ARTIFACT_DIR = "deploybench"  # a handler's export: the artifact here, your own files untouched
STAND_IN_MODULE = "deploybench_standin.py"  # sagemaker/standin.py, copied: the stand-in the study served


@dataclass
class Built:
    """One exported variant: its files and settings, and how its artifact was checked."""

    plan: RuntimePlan
    precision: str
    parity: ParityReport
    artifact: str
    versions: dict[str, Any]


def rebuild(
    model: LoadedModel, candidate: Candidate, thresholds: ParityThresholds, cache_dir: Path | None
) -> Built:
    """Build the candidate's variant (a cache hit when the study's cache is there) and re-check parity."""
    started = time.time()
    threads = candidate.threads
    variant, _ = build_variant(
        model.spec, candidate.backend, threads=threads, cache_dir=cache_dir, model=model
    )
    plan = plan_for(variant, threads)
    fresh = any(path.stat().st_mtime >= started for path in plan.files.values())
    parity = recheck(model, variant, candidate, thresholds, cache_dir)
    parity = through_handler(model, candidate.backend, variant, parity)  # a handler's: through its code
    if parity.verdict == "rejected":
        raise ExportError(f"{candidate.key}: refused: the rebuilt artifact fails parity: {parity.reason}")
    artifact = "rebuilt (it was not in the artifact cache)" if fresh else "from the artifact cache"
    return Built(plan, variant.precision, parity, artifact, dict(variant.versions))


def recheck(
    model: LoadedModel,
    variant: Variant,
    candidate: Candidate,
    thresholds: ParityThresholds,
    cache_dir: Path | None,
) -> ParityReport:
    """The study's own gate on the rebuilt artifact: at every batch size its server may form, and for
    reduced precision on random weights in two parts (the trained stand-in with the trained limits,
    this model on the sanity floor), since random weights cannot show int8 rounding against the
    trained limits: judged otherwise, the study's winner could never be exported."""
    threads = candidate.threads
    inputs = parity_set(model, PARITY_INPUTS)
    eager, _ = build_variant(model.spec, REFERENCE, threads=threads, cache_dir=cache_dir, model=model)
    reference = predict_in_chunks(eager, inputs)
    sizes = served_batch_sizes(candidate.max_batch_size)
    stand_in = (
        StandIn(thresholds, sizes, cache_dir=cache_dir)
        if needs_stand_in(model.weights, variant.precision)
        else None
    )
    return judge_variant(variant, inputs, reference, thresholds, sizes, stand_in, threads)


def handler_context(model: LoadedModel) -> dict[str, Any] | None:
    """What the template keeps of a SageMaker handler: every function the user wrote runs unchanged,
    and their network (model_fn's, else the TorchScript file) answers attribute reads beside the stand-in."""
    check = model.handler
    if check is None:
        return None
    if check.limit:
        raise ExportError(f"{model.name}: {check.limit}: only the eager candidate can be exported")
    kept = [name for name in ("input_fn", "predict_fn", "output_fn", "transform_fn") if name in check.defined]
    model_file = None
    if "model_fn" not in check.defined:
        model_file = torch_model_file(model_folder(model.spec.source)).name
    return {
        "program": check.program,
        "kept": kept,
        "model_fn": "model_fn" in check.defined,
        "model_file": model_file,
    }


def inference_source(model: LoadedModel, candidate: Candidate, built: Built) -> str:
    """code/inference.py for this variant, compiled once here so a template bug never reaches a container."""
    context = {
        "trial_id": candidate.key,
        "backend": candidate.backend,
        "precision": built.precision,
        "files": list(built.plan.files),
        "runtime": built.plan.runtime,
        "threads": candidate.threads,
        "settings": built.plan.settings,
        "input_shape": tuple(model.input_shape),
        "top_k": TOP_K,
        "handler": handler_context(model),
        "artifact_dir": ARTIFACT_DIR if model.handler is not None else "",
    }
    source = render("inference.py.j2", context)
    compile(source, "code/inference.py", "exec")
    return source


def lay_out_compiled(root: Path, model: LoadedModel, candidate: Candidate, built: Built) -> None:
    """Artifact files at the root; the generated handler, requirements and the user's code under code/."""
    code = root / "code"
    code.mkdir(parents=True)
    source = inference_source(model, candidate, built)
    user_dir = model_folder(model.spec.source) if model.handler is not None else None
    user_requirements = None
    artifacts = root
    if user_dir is not None and model.handler is not None:  # your files as they are, the artifact beside
        copy_user_files(user_dir, root, weights=True)
        copy_user_code(user_dir, code, model.handler.program)
        (code / STAND_IN_MODULE).write_text(Path(standin.__file__).read_text())
        user_requirements = user_dir / "code" / "requirements.txt"
        artifacts = root / ARTIFACT_DIR
        artifacts.mkdir()
    elif model.labels:
        (code / "labels.json").write_text(json.dumps(model.labels))
    for name, path in built.plan.files.items():
        (artifacts / name).write_bytes(path.read_bytes())
    (code / "inference.py").write_text(source)
    (code / "requirements.txt").write_text(merged_requirements(user_requirements, built.plan.requirement))
