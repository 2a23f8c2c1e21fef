"""What a worker runs per batch: the built-in vision pipeline (one batched predict call) or a user's
inference.py with SageMaker's handler contract (model_fn, input_fn, predict_fn, output_fn, transform_fn).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from deploybench.serve import vision
from deploybench.serve.errors import error_result
from deploybench.serve.protocol import WorkItem, WorkResult

THREE_STEPS = ("input_fn", "predict_fn", "output_fn")


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
            except Exception as exc:  # any failure of one body is that request's answer, never the batch's
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
    """Import code/<program>.py as SageMaker does: code/ first on sys.path, then import by its own name,
    so it sits in sys.modules (dataclasses, pickling and `import inference` from helpers work)."""
    code_dir = path.parent.resolve()
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    name = path.stem
    taken = sys.modules.get(name)
    if taken is not None and not _defined_in(taken, code_dir):
        raise HandlerContractError(
            f"{path.name}: the module name {name!r} is already taken by {taken!r}; rename the handler file"
        )
    module = importlib.import_module(name)
    if not _defined_in(module, code_dir):
        raise HandlerContractError(f"{path.name}: `import {name}` finds {module!r}; rename the handler file")
    check_contract(module, path)
    return module


def _defined_in(module: ModuleType, folder: Path) -> bool:
    origin = getattr(module, "__file__", None)
    return origin is not None and Path(origin).resolve().parent == folder


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


def bind(fn: Callable[..., Any], base_args: int, context: Any) -> Callable[..., Any]:
    """A callable taking just the base arguments, adding `context` when the user's function declares one
    more parameter (the toolkit counts every parameter; any other count is a start-up error here,
    where SageMaker would fail every request with a TypeError)."""
    try:
        count = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return fn
    if count == base_args:
        return fn
    if count == base_args + 1:
        return lambda *args: fn(*args, context)
    name = getattr(fn, "__name__", "handler function")
    raise HandlerContractError(
        f"{name} takes {count} arguments; SageMaker passes {base_args} ({base_args + 1} with context)"
    )
