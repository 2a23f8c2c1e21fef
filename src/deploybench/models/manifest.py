"""What a torchvision model is, cached: weights label, fingerprint and labels, without building it.

A server worker that loads a cached ONNX or OpenVINO artifact needs only the model's fingerprint,
the artifact's key; a full load would import torchvision (which imports torch._dynamo) and
initialise the network just to learn it, the slowest part of a worker's start. So the first load
writes this manifest beside the artifacts; later loads read it and build the module only when a
backend asks for it (LoadedModel.module).

A manifest is used only while it still describes what a full load would give: its key holds the
source, the weights request, the input shape and the library versions (as every cache key does);
a pretrained manifest also holds the checkpoint file's size and modification time, and a random one
is void once `weights=auto` would find a pretrained checkpoint on disk.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploybench.cache import default_cache_root, variant_cache_dir
from deploybench.config import ModelSpec

if TYPE_CHECKING:
    from deploybench.models.loaded import LoadedModel

MANIFEST_FILE = "manifest.json"
CACHED_REQUESTS = ("auto", "random", "pretrained")  # weights files are hashed each time


@dataclass(frozen=True)
class ModelManifest:
    path: Path
    weights: str
    fingerprint: str
    labels: list[str] | None


def _manifest_path(spec: ModelSpec, cache_dir: Path | None) -> Path:
    options = {"weights": spec.weights, "input_shape": list(spec.input_shape)}
    folder = variant_cache_dir(
        spec.source, "by-source", "model-manifest", options, cache_dir or default_cache_root()
    )
    return folder / MANIFEST_FILE


def _stat(path: Path) -> list[int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def _still_valid(spec: ModelSpec, data: dict[str, Any]) -> bool:
    checkpoint = Path(data["checkpoint"])
    if data["weights"] == "pretrained":
        return data.get("checkpoint_stat") is not None and _stat(checkpoint) == data["checkpoint_stat"]
    return not (spec.weights == "auto" and checkpoint.is_file())  # auto would now load pretrained


def lookup(spec: ModelSpec, cache_dir: Path | None) -> ModelManifest | None:
    """The cached manifest of this request, or None (none yet, unreadable, or out of date)."""
    if spec.weights not in CACHED_REQUESTS:
        return None
    path = _manifest_path(spec, cache_dir)
    try:
        data = json.loads(path.read_text())
        if not _still_valid(spec, data):
            return None
        return ModelManifest(path, data["weights"], data["fingerprint"], data["labels"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record(spec: ModelSpec, cache_dir: Path | None, loaded: LoadedModel, checkpoint: Path) -> None:
    """Write the manifest of a model just built (atomically: workers may start side by side)."""
    if spec.weights not in CACHED_REQUESTS:
        return
    path = _manifest_path(spec, cache_dir)
    data = {
        "weights": loaded.weights,
        "fingerprint": loaded.fingerprint,
        "labels": loaded.labels,
        "checkpoint": str(checkpoint),
        "checkpoint_stat": _stat(checkpoint) if loaded.weights == "pretrained" else None,
    }
    tmp = path.with_name(f".{os.getpid()}.{MANIFEST_FILE}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
