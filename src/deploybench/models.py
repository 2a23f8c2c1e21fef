"""Model sources -> a torch nn.Module plus what we know about it (input shape, weights, labels).

Nothing is ever downloaded implicitly: `weights=auto` uses pretrained weights only when they are
already on disk, else random ones, and every output says which (LoadedModel.weights).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from deploybench.config import ModelSpec


class ModelLoadError(ValueError):
    """A model source that cannot be loaded; the message names the file or name and the problem."""


@dataclass
class LoadedModel:
    module: nn.Module
    spec: ModelSpec
    input_shape: tuple[int, int, int]
    weights: str  # "pretrained" | "random" | "file:<path>" — shown in every output
    labels: list[str] | None
    fingerprint: str  # hash of source + weights, keys the artifact cache

    @property
    def name(self) -> str:
        return self.spec.source


def _hash_state(module: nn.Module, source: str) -> str:
    digest = hashlib.sha256(source.encode())
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _load_torchvision(spec: ModelSpec) -> LoadedModel:
    import torchvision  # noqa: PLC0415 - heavy, only when asked for

    name = spec.source.split(":", 1)[1]
    try:
        builder = torchvision.models.get_model_builder(name)
        weights_enum = torchvision.models.get_model_weights(name).DEFAULT
    except ValueError as exc:
        raise ModelLoadError(f"torchvision model {name!r}: {exc}") from exc
    torch.manual_seed(0)  # random weights are reproducible, so caches and parity stay meaningful
    module = builder(weights=None)
    labels = list(weights_enum.meta.get("categories", [])) or None
    weights_label = "random"
    if spec.weights == "auto" and _cached_weights_path(weights_enum) is not None:
        module.load_state_dict(weights_enum.get_state_dict(progress=False, check_hash=False))
        weights_label = "pretrained"
    module.eval()
    return LoadedModel(module, spec, spec.input_shape, weights_label, labels, _hash_state(module, spec.source))


def _cached_weights_path(weights_enum: object) -> str | None:
    import os  # noqa: PLC0415

    filename = os.path.basename(weights_enum.url)  # type: ignore[attr-defined]
    path = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
    return path if os.path.exists(path) else None


def load_model(spec: ModelSpec) -> LoadedModel:
    """Resolve a ModelSpec to an eval-mode module on the CPU."""
    if spec.source.startswith("torchvision:"):
        return _load_torchvision(spec)
    raise ModelLoadError(f"unsupported model source {spec.source!r}")
