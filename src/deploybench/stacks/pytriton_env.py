"""PyTriton's own virtual environment, created on first use under deploybench's cache.

nvidia-pytriton pins numpy < 2 while deploybench runs numpy 2, so Triton's side lives in a separate
venv: PyTriton (which bundles tritonserver and its Python backend), ONNX Runtime for the model and
Pillow for THE reference preprocessing (deploybench.inputs.payload, imported from deploybench's source).
Creating it is slow and takes a few hundred MB, so it is made once; a file lock keeps two processes
from racing.

Triton's Python-backend stub links libpython3.X.so; when the interpreter's own shared library is
not the one the dynamic loader finds first (a pyenv Python next to Debian's), the stub mixes two
patch releases and fails at start-up. `loader_path()` is the interpreter's LIBDIR, put first on
LD_LIBRARY_PATH for the server.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from deploybench.cache import default_cache_root

REQUIREMENTS = ("nvidia-pytriton==0.7.0", "onnxruntime==1.32.0", "numpy==1.26.4", "pillow==13.0.0")
STAMP = "deploybench-venv.json"
VENV_ENV_VAR = "DEPLOYBENCH_PYTRITON_VENV"
CREATE_TIMEOUT_S = 900


def venv_dir() -> Path:
    """$DEPLOYBENCH_PYTRITON_VENV, else <cache root>/stacks/pytriton-<hash of the requirements>."""
    override = os.environ.get(VENV_ENV_VAR)
    if override:
        return Path(override).expanduser()
    digest = hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()[:10]
    return default_cache_root() / "stacks" / f"pytriton-{digest}"


def venv_python(folder: Path) -> Path:
    return folder / "bin" / "python"


def read_stamp(folder: Path) -> dict[str, object] | None:
    """The stamp written after a complete install (None: absent, partial or for other requirements)."""
    try:
        stamp = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return stamp if stamp.get("requirements") == list(REQUIREMENTS) else None


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=CREATE_TIMEOUT_S, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({done.returncode}):\n{tail}")


def _loader_dir(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def _create(folder: Path, on_message: Callable[[str], None]) -> dict[str, object]:
    on_message(
        f"triton: creating PyTriton's virtual environment in {folder} (first use; PyTriton pins "
        f"numpy<2, so it cannot share deploybench's): {', '.join(REQUIREMENTS)}"
    )
    start = time.monotonic()
    _run([sys.executable, "-m", "venv", "--clear", str(folder)])
    python = venv_python(folder)
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS])
    seconds = time.monotonic() - start
    stamp: dict[str, object] = {
        "requirements": list(REQUIREMENTS),
        "seconds": round(seconds, 1),
        "libdir": _loader_dir(python),
        "created_by": sys.executable,
    }
    (folder / STAMP).write_text(json.dumps(stamp, indent=2))
    on_message(f"triton: PyTriton environment ready in {seconds:.0f} s")
    return stamp


def ensure_venv(on_message: Callable[[str], None] = lambda message: None) -> tuple[Path, dict[str, object]]:
    """The venv's python and its stamp, creating the venv first when missing (RuntimeError if pip fails)."""
    folder = venv_dir()
    stamp = read_stamp(folder)
    if stamp is None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open(folder.parent / f".{folder.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be creating it right now
            stamp = read_stamp(folder) or _create(folder, on_message)
    return venv_python(folder), stamp


def loader_path(stamp: dict[str, object]) -> str:
    """LD_LIBRARY_PATH for tritonserver: the venv interpreter's LIBDIR first, then what was set."""
    parts = [str(stamp.get("libdir") or ""), os.environ.get("LD_LIBRARY_PATH", "")]
    return ":".join(part for part in parts if part)
