"""Lay out and write the SageMaker archive: artifact at the root, code/inference.py generated from a
Jinja2 template, code/requirements.txt, README.md and deploybench-export.json.

The user's handler files travel with it (their inference.py renamed user_inference.py, imported
by the generated one); their weight files stay behind, since the artifact replaces the network
model_fn built from them.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from deploybench.report.tables import fmt

USER_MODULE = "user_inference.py"
WEIGHT_SUFFIXES = (".pt", ".pth", ".ts", ".onnx", ".bin", ".xml", ".pkl", ".ckpt", ".safetensors", ".h5")
MANIFEST = "deploybench-export.json"
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("deploybench.export", "templates"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["pyrepr"] = repr
    env.filters["fmt"] = fmt
    return env


def render(template: str, context: dict[str, Any]) -> str:
    return _environment().get_template(template).render(**context)


def _requirement_name(line: str) -> str | None:
    match = _REQUIREMENT_NAME.match(line)
    return match.group(1).lower().replace("_", "-") if match and not line.lstrip().startswith("#") else None


def merged_requirements(user_file: Path | None, pinned: str) -> str:
    """The user's requirements with our runtime pin in place of any line naming the same package."""
    ours = _requirement_name(pinned)
    lines = user_file.read_text().splitlines() if user_file is not None and user_file.is_file() else []
    kept = [line for line in lines if ours is None or _requirement_name(line) != ours]
    line = pinned if ours is None else f"{pinned}  # pinned by deploybench export: the measured version"
    return "\n".join([*kept, line]) + "\n"


def copy_user_code(model_dir: Path, code_dir: Path, program: str) -> None:
    """Every file of the user's code/ (but requirements.txt), their handler renamed user_inference.py."""
    source = model_dir / "code"
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_dir() or "__pycache__" in relative.parts or relative.as_posix() == "requirements.txt":
            continue
        target = code_dir / (USER_MODULE if relative.as_posix() == program else relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def copy_user_files(model_dir: Path, root: Path, *, weights: bool = False) -> list[str]:
    """The user's other root files (a class list, a config), and their weight files when `weights`
    (their model_fn still runs: its network answers what the handler reads beside the stand-in)."""
    copied = []
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and (weights or path.suffix.lower() not in WEIGHT_SUFFIXES):
            shutil.copy2(path, root / path.name)
            copied.append(path.name)
    return copied


@contextmanager
def staging() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="deploybench-export-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def write_archive(root: Path, out: Path) -> list[str]:
    """root's content at the archive's top level (SageMaker's layout), written to out atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    members = [p for p in sorted(root.rglob("*")) if p.is_file()]
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for path in members:
            tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)
    tmp.replace(out)
    return [p.relative_to(root).as_posix() for p in members]
