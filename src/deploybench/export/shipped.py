"""What a container export carries of this machine: the files the trial's server command names.

The study's server read the model file, archive or folder (a SageMaker model's own inference.py
included), a `--weights` file, a SageMaker model's `--payload` and the `--calibration-data` photos
by their paths here; a `module:function` model by its module. Each travels under inputs/ at a fixed
path, and the entrypoint names it there ($MODEL_DIR/inputs/...). The artifacts they built are keyed
by content, not path (cache.same_key_elsewhere, calibration_key), so the container's server finds
the shipped artifact instead of building another.
"""

from __future__ import annotations

import importlib.util
import shutil
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from deploybench.config import ModelSpec
from deploybench.export.choose import ExportError
from deploybench.inputs.calibration import calibration_source_paths
from deploybench.models.sources import is_entry_point

INPUTS_DIR = "inputs"
CODE_DIR = f"{INPUTS_DIR}/code"  # an entry point's module, on the entrypoint's PYTHONPATH
NAMED_WEIGHTS = ("auto", "pretrained", "random")


@dataclass
class Shipped:
    """Each path word of the server command -> where it lies in the export; code: CODE_DIR or None."""

    paths: dict[str, str] = field(default_factory=dict)
    code: str | None = None


def ship_inputs(root: Path, spec: ModelSpec) -> Shipped:
    """Copy every file of this machine the served spec names under root/inputs/; ExportError when one
    is missing here (export from where the study ran) or cannot travel."""
    shipped = Shipped()
    named = {
        "model": spec.source if Path(spec.source).exists() else None,
        "weights": None if spec.weights in NAMED_WEIGHTS else spec.weights,
        "payload": spec.payload,
    }
    for kind, path in named.items():
        if path is not None:
            shipped.paths[str(path)] = _copy(Path(path), root / INPUTS_DIR / kind, kind)
    if spec.calibration_data is not None:
        shipped.paths[str(spec.calibration_data)] = _copy_photos(root, Path(spec.calibration_data))
    if is_entry_point(spec.source):
        _copy(entry_module(spec.source), root / CODE_DIR, "model's module")
        shipped.code = CODE_DIR
    return shipped


def _copy(path: Path, folder: Path, kind: str) -> str:
    """path into folder (a file, or a folder whole); returns its place relative to the export."""
    if not path.exists():
        raise ExportError(f"{path}: the {kind} the study served is not here; export where the study ran")
    target = folder / path.name
    folder.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        shutil.copy2(path, target)
    return target.relative_to(folder.parent.parent).as_posix()


def _copy_photos(root: Path, folder: Path) -> str:
    """The calibration photos int8 calibration read (calibration_source_paths), by their names: the
    container's server makes the same images from them, whose digest keys the shipped artifact."""
    if not folder.is_dir():
        raise ExportError(f"{folder}: the calibration folder the study used is not here")
    target = root / INPUTS_DIR / "calibration"
    target.mkdir(parents=True, exist_ok=True)
    for photo in calibration_source_paths(folder):
        shutil.copy2(photo, target / photo.name)
    return target.relative_to(root).as_posix()


def entry_module(source: str) -> Path:
    """The file or package folder of a `module:function` model's top-level module, as the study
    imported it. A module of an installed distribution is refused: the container installs
    deploybench's requirements only, so it would not run as measured."""
    top = source.partition(":")[0].split(".")[0]
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        found = None
    if found is None or found.origin is None:
        raise ExportError(f"{source}: its module {top!r} is not importable here; export where the study ran")
    path = Path(found.origin)
    path = path.parent if found.submodule_search_locations else path
    installed = [Path(sysconfig.get_path(name)) for name in ("purelib", "platlib", "stdlib")]
    if any(path.is_relative_to(place) for place in installed):
        raise ExportError(
            f"{source}: {top} is an installed package ({path}); the container installs deploybench's "
            "requirements only: use a model file, or a module of your own"
        )
    return path
