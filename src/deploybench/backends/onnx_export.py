"""One ONNX export per model, shared by every ONNX-based backend (ONNX Runtime, OpenVINO, their int8 forms).

The export is cached on disk (see cache.py) so server workers and later runs reuse it. We use the
torch.export-based ("dynamo") exporter, the default of torch 2.14: with onnxscript 0.7.2 it yields a
clean opset-20 graph (batch norm folded, no Identity nodes) that runs as fast as the legacy
TorchScript exporter's in ONNX Runtime and OpenVINO. TorchScript modules, which torch.export cannot
trace, and models the dynamo exporter rejects fall back to the legacy exporter (dynamo=False).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deploybench.backends.base import Backend, BackendUnavailableError, BuildContext
from deploybench.cache import KEY_FILE, variant_cache_dir
from deploybench.inputs.calibration import calibration_digest
from deploybench.models.loaded import LoadedModel

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 20


@cache
def _scratch_root() -> Path:
    """Where artifacts go when the caller gave no cache dir: a private temp dir removed at exit."""
    path = Path(tempfile.mkdtemp(prefix="deploybench-artifacts-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def cache_root(ctx: BuildContext) -> Path:
    """The cache root: build_variant hands each backend its own keyed folder (root/<model>/<backend>-<key>),
    but the ONNX export and IR are shared between backends, so artifacts are keyed from the root."""
    if ctx.cache_dir is None:
        return _scratch_root()
    if (ctx.cache_dir / KEY_FILE).is_file():
        return ctx.cache_dir.parent.parent
    return ctx.cache_dir


def artifact_dir(model: LoadedModel, artifact: str, ctx: BuildContext, options: dict[str, Any]) -> Path:
    """The cache folder of one artifact, keyed by model, artifact kind, its options and library versions."""
    options = {**options, "input_shape": list(model.input_shape)}
    return variant_cache_dir(model.name, model.fingerprint, artifact, options, root=cache_root(ctx))


def write_atomically(target: Path, write: Callable[[Path], None]) -> Path:
    """Run write(tmp) then rename tmp onto target, so concurrent workers never read a half-written file."""
    tmp = target.with_name(f".{os.getpid()}.tmp.{target.name}")  # keeps the suffix exporters expect
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def require_calibration(ctx: BuildContext, backend: str) -> list[np.ndarray]:
    """int8 scales come from real images; refuse to guess them from nothing."""
    images = ctx.calibration if isinstance(ctx.calibration, list) else ctx.calibration.images()
    if not images:
        raise ValueError(
            f"backend {backend!r} needs calibration images (BuildContext.calibration is empty); "
            "build it with deploybench.inputs.calibration.calibration_images(input_shape)"
        )
    return images


def calibration_key(ctx: BuildContext, backend: str) -> str:
    """The digest that keys an int8 artifact: from the cache when the set can be keyed (no images made)."""
    if isinstance(ctx.calibration, list):
        return calibration_digest(require_calibration(ctx, backend))
    return ctx.calibration.digest()


def _export_dynamo(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        opset_version=OPSET,
        external_data=False,
        verbose=False,
    )


def _export_legacy(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=17,
            do_constant_folding=True,
        )


def _export(module: torch.nn.Module, example: np.ndarray, path: Path) -> None:
    """Export with a dynamic batch axis: dynamo first, the legacy exporter when dynamo cannot."""
    tensor = torch.from_numpy(np.ascontiguousarray(example[:1], dtype=np.float32))
    with torch.inference_mode(False), torch.no_grad():
        if isinstance(module, torch.jit.ScriptModule):
            _export_legacy(module, tensor, path)
            return
        try:
            _export_dynamo(module, tensor, path)
        except Exception as exc:  # the dynamo exporter fails on some data-dependent models
            log.warning("dynamo ONNX export failed (%s); using the legacy TorchScript exporter", exc)
            _export_legacy(module, tensor, path)


def exported_onnx(model: LoadedModel, ctx: BuildContext) -> Path:
    """The model as an fp32 ONNX file with a dynamic batch axis; ONNX sources are used as they are."""
    source_onnx = getattr(model, "onnx_path", None)
    if source_onnx is not None:
        return Path(source_onnx)
    options = {"opset": OPSET, "exporter": "torch.onnx dynamo, legacy fallback", "dynamic_batch": True}
    target = artifact_dir(model, "onnx-export", ctx, options) / ONNX_FILE
    if not target.exists():
        write_atomically(target, lambda tmp: _export(model.module, ctx.example, tmp))
    return target


def onnx_input_name(path: Path) -> str:
    """The graph's data input (older exports also list weights as inputs; skip those)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    return next((inp.name for inp in graph.input if inp.name not in initializers), INPUT_NAME)


def ensure_available(backend: Backend) -> None:
    """build() contract: refuse with the availability reason instead of failing deep inside a runtime."""
    availability = backend.availability()
    if not availability.ok:
        raise BackendUnavailableError(f"backend {backend.name!r} unavailable: {availability.reason}")
