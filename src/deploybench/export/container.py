"""The `container` export target: deploybench's own server, run as the study ran it, behind SageMaker's
bring-your-own-container contract (`docker run IMAGE serve`, port 8080, GET /ping, POST /invocations,
the model unpacked into /opt/ml/model).

One-to-one with the trial: the `serve` entrypoint runs the command the study started the trial's
server with (stacks/process.py serve_command: workers, threads, batching, every runtime knob), only
its host, port and cache folder are the container's, and the files of this machine it names (a model
file, archive or module, a weights file, requests, calibration photos) are their copies under
inputs/ (export/shipped.py). The artifact cache entries that command reads are shipped (recorded
while a build runs exactly as a server worker runs it), so the container's server loads the
measured artifact instead of building another. deploybench travels as its own
source (copied from the running package: works from an editable install and from a wheel, and
carries what ran, uncommitted edits included), put on PYTHONPATH by the entrypoint; requirements.txt
pins deploybench's dependencies to the versions the study measured with (environment.json).
"""

from __future__ import annotations

import shlex
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

import deploybench
from deploybench.backends.build import build_variant
from deploybench.cache import TRACKED_LIBRARIES, default_cache_root, installed_versions, recording
from deploybench.config import ModelSpec
from deploybench.export.choose import ExportError
from deploybench.export.package import render
from deploybench.export.shipped import Shipped, ship_inputs
from deploybench.export.targets import CONTAINER
from deploybench.report.deployable import container_refusal
from deploybench.results import Candidate
from deploybench.stacks.process import serve_command, served_spec

MODEL_DIR = "/opt/ml/model"  # where SageMaker unpacks model.tar.gz
PORT = 8080  # SageMaker's inference port
ENTRYPOINT = "serve"  # `docker run IMAGE serve`
DOCKERFILE = "Dockerfile"
REQUIREMENTS = "requirements.txt"
SOURCE_DIR = "deploybench-src"
CACHE_DIR = "cache"
TORCH_HOME = "torch-hub"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
_CACHE_TOKEN = "/DEPLOYBENCH-CACHE"  # replaced by the entrypoint's writable copy of cache/
_SHELL = {  # serve_command's host-specific words -> the entrypoint's variables
    "--host": '"${DEPLOYBENCH_HOST:-0.0.0.0}"',
    "--port": f'"${{SAGEMAKER_BIND_TO_PORT:-{PORT}}}"',
    "--cache-dir": '"$CACHE"',
}


def entrypoint_words(spec: ModelSpec, candidate: Candidate, shipped: Shipped | None = None) -> list[str]:
    """The study's own server command (serve_command) as shell words of the entrypoint; a path of this
    machine it names is its shipped copy under $MODEL_DIR."""
    command = serve_command(spec, candidate, PORT, Path(_CACHE_TOKEN))
    paths = shipped.paths if shipped is not None else {}
    words = ['"${PYTHON:-python}"']
    for index, word in enumerate(command[1:], start=1):
        here = f'"$MODEL_DIR"/{shlex.quote(paths[word])}' if word in paths else shlex.quote(word)
        words.append(_SHELL.get(command[index - 1], here))
    return words


def requirement_pins(measured: dict[str, str]) -> list[str]:
    """deploybench's dependencies, each at the version the study measured with (environment.json),
    else at this environment's. A library of the artifact cache key whose version here is not the
    measured one is refused: the shipped artifact would be keyed (and built) by another version."""
    here = installed_versions(TRACKED_LIBRARIES)
    changed = [
        f"{n} {measured[n]} measured, {here[n]} here" for n in here if measured.get(n, here[n]) != here[n]
    ]
    if changed:
        raise ExportError(
            f"container: export from the environment the study measured with ({'; '.join(changed)})"
        )
    pins = []
    for name in _dependency_names():
        version = measured.get(name) or installed_versions([name])[name]
        if version != "absent":
            pins.append(f"{name}=={version}")
    return pins


def _dependency_names() -> list[str]:
    """deploybench's own requirements (no extras), by name, from its installed metadata."""
    try:
        declared = metadata.requires("deploybench") or []
    except metadata.PackageNotFoundError:
        declared = []
    names = []
    for line in declared:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is None or "extra" not in str(requirement.marker):
            names.append(requirement.name.lower())
    return names or sorted(TRACKED_LIBRARIES)


def ship_cache(root: Path, spec: ModelSpec, candidate: Candidate, cache_dir: Path | None) -> str:
    """Build as a server worker builds (serve/worker.py: the model the command names, the trial's
    threads and runtime knobs), record the cache directories it reads, copy them under cache/;
    a pretrained torchvision checkpoint goes under torch-hub/. Returns the weights it resolved.

    OpenVINO's compiled blobs go too: the study's servers loaded the artifact from them, so the
    container does as measured (OpenVINO compiles afresh on another CPU). Whether they change its
    throughput was not established: runs with and without them differed less than an A/A control of
    the round trip did on the shared measuring machine (docs/measurements.md, "Export round trip")."""
    served = served_spec(spec, candidate)  # what `deploybench serve` builds from the entrypoint's words
    cache_root = cache_dir or default_cache_root()
    threads, runtime = candidate.threads, candidate.runtime
    with recording() as directories:
        variant, loaded = build_variant(
            served, candidate.backend, threads=threads, cache_dir=cache_dir, runtime=runtime
        )
    del variant
    for directory in sorted(directories):
        if directory.is_relative_to(cache_root):
            target = root / CACHE_DIR / directory.relative_to(cache_root)
            shutil.copytree(directory, target, dirs_exist_ok=True)
    if loaded.weights == "pretrained" and spec.source.startswith("torchvision:"):
        _ship_checkpoint(root, served)
    return loaded.weights


def _ship_checkpoint(root: Path, spec: ModelSpec) -> None:
    # lazy: the checkpoint's place is torchvision's business
    from deploybench.models.sources import _torchvision_checkpoint

    checkpoint = _torchvision_checkpoint(spec)
    target = root / TORCH_HOME / "hub" / "checkpoints" / checkpoint.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(checkpoint, target)


def vendor_source(root: Path) -> None:
    """The running deploybench package, as it ran, under deploybench-src/ (no bytecode)."""
    package = Path(deploybench.__file__).parent
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(package, root / SOURCE_DIR / "deploybench", ignore=ignore)


def lay_out_container(
    root: Path, spec: ModelSpec, candidate: Candidate, cache_dir: Path | None, environment: dict[str, Any]
) -> dict[str, Any]:
    """Dockerfile, the `serve` entrypoint, requirements.txt, the vendored source and the cache entries.
    Returns what the README says about them."""
    why = container_refusal(candidate)
    if why is not None:
        raise ExportError(f"{candidate.key}: the {CONTAINER} target cannot run it as measured: {why}")
    weights = ship_cache(root, spec, candidate, cache_dir)
    shipped = ship_inputs(root, served_spec(spec, candidate))
    vendor_source(root)
    pins = requirement_pins(dict(environment.get("libraries") or {}))
    python = str(environment.get("python") or ".".join(map(str, sys.version_info[:3])))
    page = {
        "trial_id": candidate.key,
        "command": " ".join(entrypoint_words(spec, candidate, shipped)),
        "code": shipped.code,
        "python": python,
        "port": PORT,
        "model_dir": MODEL_DIR,
    }
    (root / REQUIREMENTS).write_text("\n".join([f"--extra-index-url {TORCH_CPU_INDEX}", *pins]) + "\n")
    (root / DOCKERFILE).write_text(render("Dockerfile.j2", page))
    script = root / ENTRYPOINT
    script.write_text(render("serve.sh.j2", page))
    script.chmod(0o755)
    return {**page, "weights_resolved": weights, "pins": len(pins)}


def entrypoint(folder: Path, port: int, host: str, cache: Path) -> tuple[list[str], dict[str, str]]:
    """How `deploybench serve` and the round trip run an unpacked container export here: its own
    `serve` entrypoint, as the container runs it, with this Python, a loopback port and a fresh cache."""
    env = {
        "DEPLOYBENCH_MODEL_DIR": str(folder.resolve()),
        "DEPLOYBENCH_CACHE": str(cache),
        "DEPLOYBENCH_HOST": host,
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "PYTHON": sys.executable,
    }
    return ["sh", str(folder / ENTRYPOINT)], env


def is_container_export(folder: Path) -> bool:
    """A `serve` entrypoint and a Dockerfile at the root: a `--target container` export."""
    return (
        (folder / ENTRYPOINT).is_file() and (folder / DOCKERFILE).is_file() and (folder / SOURCE_DIR).is_dir()
    )
