"""On-disk artifact cache: one directory per (model fingerprint, backend, options, library versions).

Building an int8 or compiled variant can take a minute; the key changes whenever anything that
shapes the artifact changes (weights, backend, options, library versions), so a hit is always safe
to reuse and a miss never serves a stale file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import deploybench

TRACKED_LIBRARIES = ("torch", "torchvision", "onnx", "onnxruntime", "openvino", "nncf", "numpy")
KEY_FILE = "key.json"
# Bumped whenever deploybench's module paths change: pickled artifacts record class paths, so an
# artifact written under the old paths must miss rather than fail to unpickle.
CACHE_LAYOUT = 2
_RECORDERS: list[set[Path]] = []  # open `recording()` blocks: each collects the directories handed out


def default_cache_root() -> Path:
    """$DEPLOYBENCH_CACHE, else ~/.cache/deploybench."""
    env = os.environ.get("DEPLOYBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "deploybench"


def installed_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions read from package metadata (nothing imported); "absent" when missing."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


@cache
def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape artifacts: part of every cache key."""
    return {"deploybench": deploybench.__version__, **installed_versions(TRACKED_LIBRARIES)}


def cache_key(fingerprint: str, backend: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything an artifact depends on, as plain JSON-able data."""
    return {
        "model": fingerprint,
        "backend": backend,
        "options": dict(sorted((options or {}).items())),
        "versions": library_versions(),
        "layout": CACHE_LAYOUT,
    }


def _digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:60] or "model"


def variant_cache_dir(
    model_name: str,
    fingerprint: str,
    backend: str,
    options: dict[str, Any] | None = None,
    root: Path | None = None,
) -> Path:
    """Create (if needed) and return the directory for this exact artifact; key.json says what it holds.
    An entry of the same key filed under another model name is that directory (same_key_elsewhere)."""
    key = cache_key(fingerprint, backend, options)
    root = root or default_cache_root()
    name, text = f"{_safe(backend)}-{_digest(key)}", _key_text(key)
    directory = root / _safe(model_name) / name
    if not directory.is_dir():
        directory = same_key_elsewhere(root, name, text) or directory
    directory.mkdir(parents=True, exist_ok=True)
    for recorder in _RECORDERS:
        recorder.add(directory)
    key_file = directory / KEY_FILE
    if not key_file.exists():
        key_file.write_text(text)
    return directory


def _key_text(key: dict[str, Any]) -> str:
    return json.dumps(key, indent=2, sort_keys=True, default=str)


def same_key_elsewhere(root: Path, name: str, text: str) -> Path | None:
    """The entry holding exactly this key under another model folder, else None.

    The folder name is the model's source as typed (a path of the machine that built it); the key is
    its content (fingerprint, options, versions). So a model file that moved, or travelled inside a
    container export (under /opt/ml/model), finds the artifacts built from the same bytes. Looked for
    only on a miss, which a build follows anyway."""
    for found in sorted(root.glob(f"*/{name}")):
        try:
            if (found / KEY_FILE).read_text() == text:
                return found
        except OSError:
            continue
    return None


@contextmanager
def recording() -> Iterator[set[Path]]:
    """Collect every cache directory handed out inside the block (this process only).

    Every artifact, manifest and calibration digest lives in a directory from variant_cache_dir, so
    this set is exactly what a build read or wrote: `export --target container` ships it so the
    container's server finds the measured artifact instead of building another one."""
    found: set[Path] = set()
    _RECORDERS.append(found)
    try:
        yield found
    finally:
        _RECORDERS.remove(found)


def directory_bytes(path: Path) -> int:
    """Total size of the files under path (an artifact's footprint), excluding the key file."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != KEY_FILE)
