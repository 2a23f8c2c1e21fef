"""A variant as a file another serving stack loads: the ONNX file, the frozen TorchScript, a pickled module.

TorchServe and Triton do not run deploybench's Variant objects; they load a model file. The variant is
built (or read back from the artifact cache) exactly as deploybench's server builds it, and the file
it runs is handed over, so every stack serves the same bytes of model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from deploybench.cache import default_cache_root, variant_cache_dir
from deploybench.config import ModelSpec

ArtifactKind = Literal["onnx", "torchscript", "torch-module"]
SUFFIXES: dict[ArtifactKind, str] = {"onnx": ".onnx", "torchscript": ".pt", "torch-module": ".pth"}


@dataclass(frozen=True)
class ModelArtifact:
    """One model file and what the server around it needs to know."""

    kind: ArtifactKind
    path: Path
    backend: str
    precision: str
    labels: list[str] | None
    input_shape: tuple[int, int, int]
    weights: str


def model_artifact(spec: ModelSpec, backend: str, cache_dir: Path | None) -> ModelArtifact:
    """Build the variant (cached on disk) and return the file it runs; ValueError if it is not a file."""
    import torch

    # lazy: torch loads only when a stack needs an artifact
    from deploybench.backends.build import build_variant
    from deploybench.backends.onnx_export import write_atomically

    variant, loaded = build_variant(spec, backend, threads=1, cache_dir=cache_dir)
    facts = {
        "backend": backend,
        "precision": variant.precision,
        "labels": loaded.labels,
        "input_shape": loaded.input_shape,
        "weights": loaded.weights,
    }
    path = getattr(variant, "artifact_path", None)
    if path is not None and Path(path).suffix in (".onnx", ".pt"):
        kind: ArtifactKind = "onnx" if Path(path).suffix == ".onnx" else "torchscript"
        return ModelArtifact(kind, Path(path), **facts)  # type: ignore[arg-type]
    module = getattr(variant, "module", None)
    if not isinstance(module, torch.nn.Module) or isinstance(module, torch.jit.ScriptModule):
        raise ValueError(f"backend {backend!r} builds no model file another stack could load")
    kind = "torch-module"
    folder = variant_cache_dir(
        loaded.name, loaded.fingerprint, f"stack-{backend}", {"kind": kind}, cache_dir or default_cache_root()
    )
    target = folder / f"model{SUFFIXES[kind]}"
    if not target.exists():
        write_atomically(target, lambda tmp: torch.save(module, str(tmp)))
    return ModelArtifact(kind, target, **facts)  # type: ignore[arg-type]
