"""A SageMaker model.tar.gz or model folder as a model source, studied as it is.

The network is what the user's own model_fn returns, with code/inference.py imported the way the
server imports it (sagemaker.contract.load_user_module). The user's handler runs on their own sample
requests (ModelSpec.payload / content_type) with a recording stand-in for the network
(sagemaker/handler_check.py): what it feeds the network is the variants' input shape and the first
parity inputs. Photos for int8 calibration and parity go through the same code (input_fn and
predict_fn up to the network call) when the requests are images, so int8 scales fit what production
feeds the network. The same `describe_network` runs in the study and in every server worker, so both
build the same artifacts (same fingerprint, same calibration).
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
from deploybench.inputs.calibration import parity_source_paths
from deploybench.inputs.payload import default_payload_path, read_payloads
from deploybench.models.loaded import LoadedModel, ModelLoadError, first_line, hash_state
from deploybench.sagemaker.answers import AnswerDiff, compare
from deploybench.sagemaker.archive import ArchiveError, is_archive, safe_extract
from deploybench.sagemaker.context import HandlerContext
from deploybench.sagemaker.contract import HandlerContractError, bind, load_user_module
from deploybench.sagemaker.contract import program_name as contract_program_name
from deploybench.sagemaker.handler_check import HandlerCheck, HandlerFailedError, check_handler, network_input
from deploybench.sagemaker.standin import NetworkStandIn, Run
from deploybench.sagemaker.toolkit import default_input_fn, default_model_fn, default_predict_fn, text_body

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


@dataclass(frozen=True)
class HandlerRun:
    """One request through the user's functions with a given model object: input_fn then predict_fn
    (predict_fn's answer is what depends on the network), or transform_fn's whole answer."""

    input_fn: Callable[[Any, str], Any]
    predict_fn: Callable[[Any, Any], Any]
    transform_fn: Callable[[Any, Any, str, str], Any] | None
    content_type: str
    accept: str = "application/json"

    def __call__(self, model: Any, body: bytes) -> Any:
        request = text_body(body, self.content_type)
        if self.transform_fn is not None:
            return self.transform_fn(model, request, self.content_type, self.accept)
        return self.predict_fn(self.input_fn(request, self.content_type), model)


@dataclass(frozen=True)
class FixedInput:
    """No sample requests: predict_fn gets a random tensor of --input-shape (input_fn is skipped)."""

    predict_fn: Callable[[Any, Any], Any]
    input_shape: tuple[int, ...]

    def __call__(self, model: Any, body: bytes) -> Any:
        batch = np.random.default_rng(0).standard_normal((1, *self.input_shape), np.float32)
        return self.predict_fn(torch.from_numpy(batch), model)


SampleRun = HandlerRun | FixedInput


def encode_photo(image: Image.Image, content_type: str) -> bytes:
    """A photo as the user's clients send it (PNG for image/png, else JPEG)."""
    buffer = io.BytesIO()
    kind = PHOTO_FORMATS.get(content_type.split(";", 1)[0].strip().lower(), "JPEG")
    image.convert("RGB").save(buffer, format=kind, quality=95)
    return buffer.getvalue()


@dataclass(frozen=True)
class HandlerPreprocess:
    """A photo through the user's own code up to the network: what their handler would feed it
    (int8 calibration and parity photos take this path)."""

    run: HandlerRun
    network: nn.Module = dataclasses.field(compare=False, hash=False, repr=False)

    def __call__(self, image: Image.Image) -> np.ndarray:
        try:
            batch = network_input(self.run, self.network, encode_photo(image, self.run.content_type))
        except HandlerFailedError as exc:
            raise ModelLoadError(f"calibration photo: {exc}") from exc
        except Exception as exc:  # the user's code on a photo of ours
            raise ModelLoadError(f"calibration photo: your handler failed: {first_line(exc)}") from exc
        return np.ascontiguousarray(batch[0], dtype=np.float32)


@dataclass(frozen=True)
class ThroughHandler:
    """Parity through the user's code: each sample request and photo through the handler with a
    variant standing in, against the same with the original network."""

    run: SampleRun
    network: nn.Module
    bodies: tuple[bytes, ...]
    input_shape: tuple[int, ...]

    def __call__(self, predict: Run, name: str) -> AnswerDiff:
        stand_in = NetworkStandIn(predict, self.network, self.input_shape, name)
        total = AnswerDiff()
        for body in self.bodies:
            compare(total, self.run(self.network, body), self.run(stand_in, body))
        return total


def _parity_photos(content_type: str) -> list[bytes]:
    """The parity photos as the user's clients would send them (never a calibration photo)."""
    return [encode_photo(Image.open(path), content_type) for path in parity_source_paths()]


def _sample_bodies(spec: ModelSpec) -> list[bytes] | None:
    """The request bodies to record the handler on: --payload, else the bundled photo for image types."""
    payload = spec.payload or (default_payload_path() if is_image_type(spec.content_type) else None)
    if payload is None:
        return None
    try:
        return list(read_payloads(payload, spec.content_type))
    except Exception as exc:  # an unreadable payload
        raise ModelLoadError(f"{payload}: cannot read the sample requests: {first_line(exc)}") from exc


def _handler_run(
    spec: ModelSpec, handler: UserHandler, bodies: list[bytes] | None
) -> HandlerRun | FixedInput:
    predict_fn = handler.function("predict_fn", 2) or default_predict_fn
    if bodies is None:
        return FixedInput(predict_fn, tuple(spec.input_shape))
    input_fn = handler.function("input_fn", 2) or default_input_fn  # the server's default too
    return HandlerRun(input_fn, predict_fn, handler.function("transform_fn", 4), spec.content_type)


def _fingerprint(network: nn.Module, handler: UserHandler) -> str:
    """Weights and handler code, never the folder's path: the study and each worker agree on it."""
    digest = hashlib.sha256()
    for path in sorted((handler.model_dir / "code").rglob("*.py")):
        digest.update(path.read_bytes())
    return hash_state(network, "sagemaker:" + digest.hexdigest())


def _checked(
    spec: ModelSpec,
    handler: UserHandler,
    network: nn.Module,
    run: HandlerRun | FixedInput,
    bodies: list[bytes],
) -> tuple[HandlerCheck, np.ndarray | None]:
    if isinstance(run, FixedInput) and "transform_fn" in handler.defined:
        reason = "transform_fn needs sample requests to be recorded on (give --payload)"
        return HandlerCheck(handler.program, False, reason, handler.defined), None
    try:  # on the device model_fn chose, as the handler runs
        return check_handler(run, network, bodies, handler.program, handler.defined)
    except HandlerFailedError as exc:
        source = spec.payload or "the sample request"
        raise ModelLoadError(f"{spec.source}: {exc} ({source})") from exc


def describe_network(spec: ModelSpec, handler: UserHandler, obj: object) -> LoadedModel:
    """model_fn's value as a LoadedModel: what the handler feeds it (input shape, sample inputs), the
    path of calibration photos through the handler, and whether a variant may stand in for it."""
    network = network_of(obj, spec.source)
    bodies = _sample_bodies(spec)
    run = _handler_run(spec, handler, bodies)
    check, samples = _checked(spec, handler, network, run, bodies or [b""])
    shape = check.input_shape or tuple(spec.input_shape)
    network.to("cpu")  # the backends place it themselves (BuildContext.device)
    photos = isinstance(run, HandlerRun) and is_image_type(spec.content_type) and check.replaceable
    preprocess = HandlerPreprocess(run, network) if photos else None  # type: ignore[arg-type]
    weights = f"model_fn:{Path(spec.source).name}"
    loaded = LoadedModel(network, spec, shape, weights, None, _fingerprint(network, handler))  # type: ignore[arg-type]
    loaded.preprocess, loaded.sample_inputs, loaded.handler = preprocess, samples, check
    if check.replaceable:
        checked = [*(bodies or [b""]), *(_parity_photos(spec.content_type) if photos else [])]
        loaded.through_handler = ThroughHandler(run, network, tuple(checked), shape)
    return loaded


def load_sagemaker_model(spec: ModelSpec) -> LoadedModel:
    """Unpack (archives), import the handler, run model_fn, then describe what it returned."""
    folder = model_folder(spec.source)
    handler = open_handler(folder, spec.source)
    return describe_network(spec, handler, run_model_fn(handler, spec.source))
