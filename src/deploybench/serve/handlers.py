"""What a worker runs per batch: the built-in vision pipeline (one batched predict call) or a user's
inference.py with SageMaker's handler contract (model_fn, input_fn, predict_fn, output_fn, transform_fn).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from deploybench.serve import vision
from deploybench.serve.protocol import WorkItem, WorkResult
from deploybench.serve.vision import HandlerError

THREE_STEPS = ("input_fn", "predict_fn", "output_fn")
NO_TIMINGS = (0.0, 0.0, 0.0, 0.0)


class HandlerContractError(ValueError):
    """The user's inference.py breaks the contract (reported at start-up, before serving)."""


@dataclass
class VisionModel:
    """The built-in model: a backend variant plus what the output encoders need."""

    variant: Any  # deploybench.backends.base.Variant (kept untyped: this module stays torch-free)
    labels: list[str] | None
    input_shape: tuple[int, int, int]
    top_k: int = 5
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.variant.predict(batch)


@dataclass
class HandlerContext:
    """Passed to handler functions that take a `context` argument (SageMaker's shape, minimal)."""

    model_dir: str
    worker_index: int
    system_properties: dict[str, Any]
    request_content_type: str = ""
    accept: str = ""


def error_status(exc: BaseException) -> int:
    """The HTTP status an exception carries (status_code / status / http_status), else 500."""
    for attr in ("status_code", "status", "http_status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 400 <= value <= 599:
            return value
    return 500


def error_result(rid: int, exc: BaseException, debug: bool, timings: tuple = NO_TIMINGS) -> WorkResult:
    """A JSON error body; the traceback only with --debug, never by default."""
    status = error_status(exc)
    payload: dict[str, Any] = {"error": str(exc) or type(exc).__name__, "status": status}
    if debug:
        payload["traceback"] = traceback.format_exception(exc)
    return WorkResult(rid, status, json.dumps(payload).encode(), vision.JSON, timings)


class BuiltinPipeline:
    """Decode every request of the batch into one preallocated array, run ONE predict, split the rows."""

    def __init__(self, model: VisionModel, max_batch_size: int, debug: bool) -> None:
        self.model = model
        self.debug = debug
        self.buffer = np.empty((max_batch_size, *model.input_shape), dtype=np.float32)

    def run(self, items: list[WorkItem]) -> list[WorkResult]:
        results: dict[int, WorkResult] = {}
        accepted: list[tuple[WorkItem, float, float]] = []
        for item in items:
            try:
                decode_s, prep_s = vision.decode_into(
                    item.body, item.content_type, self.buffer[len(accepted)]
                )
            except HandlerError as exc:
                results[item.rid] = error_result(item.rid, exc, self.debug)
                continue
            accepted.append((item, decode_s, prep_s))
        if accepted:
            results.update(self._predict(accepted))
        return [results[item.rid] for item in items]

    def _predict(self, accepted: list[tuple[WorkItem, float, float]]) -> dict[int, WorkResult]:
        start = time.perf_counter()
        try:
            logits = self.model.predict(self.buffer[: len(accepted)])
        except Exception as exc:
            return {item.rid: error_result(item.rid, exc, self.debug) for item, _, _ in accepted}
        infer_s = time.perf_counter() - start
        out: dict[int, WorkResult] = {}
        for row, (item, decode_s, prep_s) in enumerate(accepted):
            begin = time.perf_counter()
            body = vision.encode_output(logits[row], item.accept, self.model.labels, self.model.top_k)
            timings = (decode_s, prep_s, infer_s, time.perf_counter() - begin)
            out[item.rid] = WorkResult(item.rid, 200, body, item.accept, timings)
        return out


def load_user_module(path: Path) -> ModuleType:
    """Import code/inference.py the way SageMaker does: its folder on sys.path, checked for the contract."""
    code_dir = str(path.parent)
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    spec = importlib.util.spec_from_file_location(f"deploybench_user_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise HandlerContractError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    check_contract(module, path)
    return module


def check_contract(module: ModuleType, path: Path) -> None:
    defined = [name for name in THREE_STEPS if callable(getattr(module, name, None))]
    if callable(getattr(module, "transform_fn", None)) and defined:
        raise HandlerContractError(
            f"{path}: transform_fn cannot be combined with {', '.join(defined)} (SageMaker contract)"
        )


def check_contract_source(path: Path) -> None:
    """The same contract check from the source alone, so the front can refuse before spawning workers."""
    import ast

    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise HandlerContractError(f"{path}: cannot be read as Python: {exc}") from exc
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    defined = [name for name in THREE_STEPS if name in names]
    if "transform_fn" in names and defined:
        raise HandlerContractError(
            f"{path}: transform_fn cannot be combined with {', '.join(defined)} (SageMaker contract)"
        )


def _wants_context(fn: Callable[..., Any], base_args: int) -> bool:
    """SageMaker passes `context` only to functions declaring one more positional parameter."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) > base_args


def bind(fn: Callable[..., Any], base_args: int, context: HandlerContext) -> Callable[..., Any]:
    """A callable taking just the base arguments, adding `context` when the user's function wants it."""
    if _wants_context(fn, base_args):
        return lambda *args: fn(*args, context)
    return fn
