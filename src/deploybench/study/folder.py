"""What makes a folder a deploybench study, and the key of what it measured.

A study writes into its folder and may clear it (--fresh), so it must never take over a folder that
holds something else: a folder is a study only when deploybench marked it (or, for folders written
before the mark existed, when it holds the study files and the lock a study leaves). The key names
what the measurements depend on: the resolved config, the contents of every file it points at
(model, weights, payload, calibration and evaluation data) and the library versions. A folder whose
data were measured under another key refuses to resume, and the default folder name carries the key,
so retrained weights or a new payload start a new study instead of reprinting the old answer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from deploybench.cache import library_versions
from deploybench.study.spec import StudyConfig, dump_study_config

MARKER = ".deploybench-study.json"
FOLDER_FORMAT = 1
# What a study folder held before the marker existed: its study.yaml beside what it measured.
LEGACY_FILES = ("trials.jsonl", "environment.json", "variants.json", ".lock")
CHUNK = 1 << 20


class NotAStudyFolderError(ValueError):
    """The folder holds files deploybench did not write: a study would overwrite or delete them."""


def _file_digest(path: Path, digest: Any) -> None:
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)


def content_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's relative file names and bytes, in sorted order."""
    digest = hashlib.sha256()
    if path.is_file():
        _file_digest(path, digest)
    else:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(path)).encode() + b"\0")
            _file_digest(file, digest)
    return digest.hexdigest()[:16]


def _named_paths(config: StudyConfig) -> dict[str, str | None]:
    model = config.model
    return {
        "model": model.source,
        "weights": model.weights,
        "model payload": str(model.payload) if model.payload else None,
        "calibration data": str(model.calibration_data) if model.calibration_data else None,
        "payload": str(config.payload) if config.payload else None,
        "eval data": config.eval_data,
    }


def input_files(config: StudyConfig) -> dict[str, str]:
    """The digest of every existing file or folder the config names (keywords like 'auto' are not)."""
    digests = {}
    for label, text in _named_paths(config).items():
        if text is not None and Path(text).exists():
            digests[label] = content_digest(Path(text))
    return digests


def study_key(config: StudyConfig) -> dict[str, Any]:
    """What a study's measurements depend on, as plain JSON data."""
    config_yaml = dump_study_config(config)
    return {
        "config": hashlib.sha256(config_yaml.encode()).hexdigest()[:16],
        "files": input_files(config),
        "libraries": library_versions(),
    }


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]


def key_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One phrase per thing that changed, for the refusal message."""
    changes = []
    if old.get("config") != new.get("config"):
        changes.append("the configuration")
    old_files, new_files = old.get("files", {}), new.get("files", {})
    for label in sorted(set(old_files) | set(new_files)):
        if old_files.get(label) != new_files.get(label):
            changes.append(f"the {label} file's contents")
    old_libs, new_libs = old.get("libraries", {}), new.get("libraries", {})
    for name in sorted(set(old_libs) | set(new_libs)):
        if old_libs.get(name) != new_libs.get(name):
            changes.append(f"{name} {old_libs.get(name)} -> {new_libs.get(name)}")
    return changes


def read_marker(root: Path) -> dict[str, Any] | None:
    path = root / MARKER
    return json.loads(path.read_text()) if path.is_file() else None


def write_marker(root: Path, key: dict[str, Any]) -> None:
    (root / MARKER).write_text(json.dumps({"format": FOLDER_FORMAT, "key": key}, indent=2, sort_keys=True))


def is_study_folder(root: Path) -> bool:
    if (root / MARKER).is_file():
        return True
    return (root / "study.yaml").is_file() and any((root / name).exists() for name in LEGACY_FILES)


def same_config(stored_yaml: str, config_yaml: str) -> bool:
    """The stored study.yaml is the same study as `config_yaml` once read by today's code: a release
    that adds a setting (dumped with its default) or renames a value must not refuse a resume."""
    try:
        stored = StudyConfig.model_validate(yaml.safe_load(stored_yaml) or {})
    except (ValueError, yaml.YAMLError):
        return False
    return dump_study_config(stored) == config_yaml


def check_study_folder(root: Path) -> None:
    """Raise when `root` exists, is not empty and is not a study: nothing in it may be overwritten."""
    if not root.exists():
        return
    if not root.is_dir():
        raise NotAStudyFolderError(f"{root} is a file, not a study folder; choose another --out")
    entries = sorted(p.name for p in root.iterdir())
    if entries and not is_study_folder(root):
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise NotAStudyFolderError(
            f"{root} is not a deploybench study folder and is not empty ({shown}): a study would "
            "overwrite or, with --fresh, delete what is there; choose a new or empty --out folder"
        )
