"""A SageMaker model.tar.gz or model folder as a model source, studied as it is.

The network is what the user's own model_fn returns, with code/inference.py imported the way the
server imports it (sagemaker.contract.load_user_module); the input shape is what their input_fn makes
of their own request bodies (ModelSpec.payload / content_type), else ModelSpec.input_shape. Photos
for int8 calibration and parity reach the network through that same input_fn when the requests are
images, so int8 scales fit what production feeds it. handler_check decides whether a variant may
replace predict_fn. The same `describe_network` runs in the study and in every server worker, so
both build the same artifacts (same fingerprint, same calibration).
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import io
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from deploybench.config import ModelSpec
from deploybench.inputs.payload import default_payload_path, read_payloads
from deploybench.models.loaded import LoadedModel, ModelLoadError, first_line, hash_state
from deploybench.sagemaker.archive import ArchiveError, is_archive, safe_extract
from deploybench.sagemaker.context import HandlerContext
from deploybench.sagemaker.contract import HandlerContractError, bind, load_user_module
from deploybench.sagemaker.contract import program_name as contract_program_name
from deploybench.sagemaker.handler_check import HandlerCheck, check_predict_fn, values
from deploybench.sagemaker.toolkit import default_input_fn, default_model_fn, text_body

HANDLER_FUNCTIONS = ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")
PHOTO_FORMATS = {"image/png": "PNG"}  # other image content types get JPEG
IMAGE_CONTENT_TYPES = ("image/", "application/x-image", "application/octet-stream")

_LOADED_CODE: list[Path] = []  # code/ folders imported in this process (one handler at a time)


def is_sagemaker_source(source: str) -> bool:
    """A .tar.gz/.tgz/.tar archive, or a folder with a code/ folder (SageMaker's model layout)."""
    path = Path(source)
    return is_archive(path) or (path.is_dir() and (path / "code").is_dir())


def is_image_type(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower().startswith(IMAGE_CONTENT_TYPES)


def program_name() -> str:
    """SAGEMAKER_PROGRAM (with or without .py), else inference.py: the file the server imports."""
    try:
        return contract_program_name(os.environ)[0]
    except HandlerContractError as exc:
        raise ModelLoadError(str(exc)) from exc


@cache
def _unpacked(archive: Path, stamp: tuple[int, int]) -> Path:
    """One safe extraction per archive version and process, removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="deploybench-sagemaker-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return safe_extract(archive, folder)


def model_folder(source: str) -> Path:
    """The model folder itself, or the archive unpacked (every member checked first)."""
    path = Path(source)
    if path.is_dir():
        return path
    stat = path.stat()
    try:
        return _unpacked(path.resolve(), (stat.st_mtime_ns, stat.st_size))
    except ArchiveError as exc:
        raise ModelLoadError(f"{source}: {exc}") from exc


@dataclass
class UserHandler:
    """The user's inference.py, imported as the server imports it, called by SageMaker's rules."""

    module: ModuleType
    model_dir: Path
    context: Any
    program: str

    def function(self, name: str, base_args: int) -> Callable[..., Any] | None:
        """The user's function taking `base_args` arguments (plus `context` if it declares one), or None."""
        fn = getattr(self.module, name, None)
        return bind(fn, base_args, self.context) if callable(fn) else None

    @property
    def defined(self) -> tuple[str, ...]:
        return tuple(name for name in HANDLER_FUNCTIONS if callable(getattr(self.module, name, None)))


def _forget_other_handlers(code_dir: Path) -> None:
    """Drop the modules (and sys.path entry) of a handler imported earlier from another folder, so two
    archives studied in one process never share `inference` or a sibling module of the same name."""
    for old in [p for p in _LOADED_CODE if p != code_dir]:
        for name, module in list(sys.modules.items()):
            origin = getattr(module, "__file__", None)
            if origin and Path(origin).resolve().is_relative_to(old):
                del sys.modules[name]
        if str(old) in sys.path:
            sys.path.remove(str(old))
        _LOADED_CODE.remove(old)


def handler_context(model_dir: Path, worker: int = 0) -> Any:
    """The `context` handler functions may take, as the server builds it."""
    return HandlerContext(str(model_dir), worker, 1)


def open_handler(model_dir: Path, source: str) -> UserHandler:
    """Import code/<SAGEMAKER_PROGRAM> from the model folder; errors name the file and the cause."""
    program = program_name()
    path = model_dir / "code" / program
    if not path.is_file():
        raise ModelLoadError(f"{source}: no code/{program} (set SAGEMAKER_PROGRAM to your handler file)")
    code_dir = path.parent.resolve()
    _forget_other_handlers(code_dir)
    try:
        module = load_user_module(path)
    except Exception as exc:  # the user's module: SyntaxError, ImportError, anything it raises
        raise ModelLoadError(f"{source}: code/{program} cannot be imported: {first_line(exc)}") from exc
    if code_dir not in _LOADED_CODE:
        _LOADED_CODE.append(code_dir)
    return UserHandler(module, model_dir, handler_context(model_dir), program)


def run_model_fn(handler: UserHandler, source: str) -> Any:
    """The handler's model_fn, else the PyTorch toolkit's default (TorchScript model.pt), as served."""
    model_fn = handler.function("model_fn", 1) or default_model_fn
    try:
        return model_fn(str(handler.model_dir))
    except Exception as exc:  # the user's code
        raise ModelLoadError(f"{source}: model_fn failed: {type(exc).__name__}: {first_line(exc)}") from exc


def _describe(obj: object) -> str:
    kind = type(obj)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(obj, dict):
        held = [key for key, value in obj.items() if isinstance(value, nn.Module)]
        hint = f" (the nn.Module under {held[0]!r} is what to return)" if held else ""
        return f"a dict with keys {sorted(map(str, obj))[:5]}{hint}"
    return f"a {name}"


def network_of(obj: object, source: str) -> nn.Module:
    """model_fn's value when the backends can take it; else the one-line error the issue asks for."""
    if isinstance(obj, nn.Module):
        return obj.eval()
    raise ModelLoadError(
        f"{source}: model_fn returned {_describe(obj)}, not a torch.nn.Module: only eager can run it "
        f"(your handler as is: deploybench serve {source}); the other backends "
        "(torchscript, inductor, onnxruntime, openvino and their int8/bf16 forms) "
        "compile an nn.Module whose forward takes a float tensor (N, C, H, W) and returns a tensor"
    )


def model_input(data: Any, what: str) -> np.ndarray:
    """What input_fn returned, as one CHW float32 image (a batch axis of 1 is dropped)."""
    array = values(data)
    if array is not None and array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array is None or array.ndim != 3:
        shape = getattr(data, "shape", None)
        raise ModelLoadError(
            f"{what}: input_fn returned {type(data).__name__} {tuple(shape) if shape else ''}: the "
            "backends need one image tensor (C, H, W), optionally with a batch axis of 1"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


class HandlerPreprocess:
    """A photo through the user's input_fn, encoded as their clients send it (int8 calibration, parity)."""

    def __init__(self, input_fn: Callable[[Any, str], Any], content_type: str) -> None:
        self.input_fn = input_fn
        self.content_type = content_type
        self.format = PHOTO_FORMATS.get(content_type.split(";", 1)[0].strip().lower(), "JPEG")

    def __eq__(self, other: object) -> bool:  # equal ones share the memoised calibration set
        return isinstance(other, HandlerPreprocess) and (other.input_fn, other.content_type) == (
            self.input_fn,
            self.content_type,
        )

    def __hash__(self) -> int:
        return hash((self.input_fn, self.content_type))

    def __call__(self, image: Image.Image) -> np.ndarray:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format=self.format, quality=95)
        return model_input(self.input_fn(buffer.getvalue(), self.content_type), "calibration photo")


def _samples(payload: Path, spec: ModelSpec, input_fn: Callable[..., Any]) -> tuple[Any, np.ndarray]:
    """(the first request as input_fn returned it, every request as model input (N, C, H, W))."""
    try:
        bodies = read_payloads(payload, spec.content_type)
        raw = [input_fn(text_body(body, spec.content_type), spec.content_type) for body in bodies]
    except ModelLoadError:
        raise
    except Exception as exc:  # the user's input_fn, or an unreadable payload
        raise ModelLoadError(f"{payload}: input_fn on the payload failed: {first_line(exc)}") from exc
    inputs = [model_input(data, str(payload)) for data in raw]
    shapes = sorted({x.shape for x in inputs})
    if len(shapes) > 1:
        raise ModelLoadError(
            f"{payload}: input_fn returns several shapes {shapes}: the backends need one fixed "
            "input shape (resize or crop in input_fn)"
        )
    return raw[0], np.stack(inputs)


def _fingerprint(network: nn.Module, handler: UserHandler) -> str:
    """Weights and handler code, never the folder's path: the study and each worker agree on it."""
    digest = hashlib.sha256()
    for path in sorted((handler.model_dir / "code").rglob("*.py")):
        digest.update(path.read_bytes())
    return hash_state(network, "sagemaker:" + digest.hexdigest())


def describe_network(spec: ModelSpec, handler: UserHandler, obj: object) -> LoadedModel:
    """model_fn's value as a LoadedModel: input shape, sample inputs, preprocessing, predict_fn check."""
    network = network_of(obj, spec.source)
    input_fn = handler.function("input_fn", 2) or default_input_fn  # the server's default too
    # no payload: image handlers read the bundled photo (as the study does), others get --input-shape
    payload = spec.payload or (default_payload_path() if is_image_type(spec.content_type) else None)
    if payload is not None:
        first, samples = _samples(payload, spec, input_fn)
    else:
        samples = None
        first = torch.from_numpy(np.random.default_rng(0).standard_normal((1, *spec.input_shape), np.float32))
    shape = tuple(samples.shape[1:]) if samples is not None else tuple(spec.input_shape)
    check = _check(handler, network, first)  # on the device model_fn chose, as its predict_fn runs
    network.to("cpu")  # the backends place it themselves (BuildContext.device)
    preprocess = HandlerPreprocess(input_fn, spec.content_type) if is_image_type(spec.content_type) else None
    weights = f"model_fn:{Path(spec.source).name}"
    loaded = LoadedModel(network, spec, shape, weights, None, _fingerprint(network, handler))  # type: ignore[arg-type]
    loaded.preprocess, loaded.sample_inputs, loaded.handler = preprocess, samples, check
    return loaded


def _check(handler: UserHandler, network: nn.Module, first: Any) -> HandlerCheck:
    defined = handler.defined
    if "transform_fn" in defined:
        check = HandlerCheck(handler.program, False, "transform_fn does input, prediction and output at once")
    else:
        check = check_predict_fn(handler.function("predict_fn", 2), network, first, handler.program)
    return dataclasses.replace(check, defined=defined)


def load_sagemaker_model(spec: ModelSpec) -> LoadedModel:
    """Unpack (archives), import the handler, run model_fn, then describe what it returned."""
    folder = model_folder(spec.source)
    handler = open_handler(folder, spec.source)
    return describe_network(spec, handler, run_model_fn(handler, spec.source))
