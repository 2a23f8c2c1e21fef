"""code/requirements.txt: the SageMaker toolkit pip-installs it at start-up; deploybench checks it, and
installs it only when asked (--install-requirements), into a folder of its own.

The folder is appended to the workers' sys.path: what the server itself runs on (torch, numpy, ...)
keeps the version installed here, and requirements only add what is missing. It is keyed by the
file's content and the Python version, under the cache root, so a second start reuses it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

REQUIREMENTS = Path("code") / "requirements.txt"
DONE_MARKER = ".complete"
PIP_TIMEOUT_S = 900


class RequirementsError(RuntimeError):
    """pip could not install code/requirements.txt; the message has pip's last lines."""


def requirements_file(model_dir: Path | None) -> Path | None:
    path = None if model_dir is None else model_dir / REQUIREMENTS
    return path if path is not None and path.is_file() else None


def _requirement_lines(path: Path) -> list[str]:
    """Requirement lines without comments, blank lines and pip options (-r, --index-url, ...)."""
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            lines.append(line)
    return lines


def _unmet(line: str) -> str | None:
    """The line when this environment does not satisfy it (or it cannot be judged), else None."""
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return line  # a URL or a path: cannot tell without installing
    if requirement.marker is not None and not requirement.marker.evaluate():
        return None
    try:
        installed = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return line
    if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
        return f"{line} (installed {installed})"
    return None


def unmet_requirements(path: Path) -> list[str]:
    """What code/requirements.txt asks for that this Python does not have."""
    return [unmet for line in _requirement_lines(path) if (unmet := _unmet(line)) is not None]


def install_requirements(path: Path, cache_root: Path) -> Path:
    """pip install -r PATH --target <cache>/requirements/<key>; returns the folder (reused if complete)."""
    key = hashlib.sha256(path.read_bytes() + sys.version.encode()).hexdigest()[:16]
    target = cache_root / "requirements" / key
    if (target / DONE_MARKER).is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
        "--upgrade", "--target", str(target), "-r", str(path),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False, cwd=path.parent
        )
    except subprocess.TimeoutExpired as exc:
        raise RequirementsError(f"pip install -r {REQUIREMENTS} took over {PIP_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise RequirementsError(f"pip install -r {REQUIREMENTS} failed:\n{tail}")
    (target / DONE_MARKER).write_text("")
    return target
