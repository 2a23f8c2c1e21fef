"""A user's inference.py run with SageMaker semantics; missing functions fall back to the built-ins.

User functions see one request at a time (their data need not stack), so a batch taken from the
queue is processed request by request here; only the built-in pipeline makes one batched call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from deploybench.serve import vision
from deploybench.serve.handlers import HandlerContext, VisionModel, bind, error_result
from deploybench.serve.protocol import WorkItem, WorkResult
from deploybench.serve.vision import HandlerError

DEFAULT_ACCEPT = vision.JSON


def resolve_accept(header: str) -> str:
    """SageMaker's rule: a missing Accept or */* means the default (application/json)."""
    header = header.strip()
    return DEFAULT_ACCEPT if not header or header == "*/*" else header


def _to_numpy(prediction: Any) -> np.ndarray:
    if hasattr(prediction, "detach"):  # a torch tensor, without importing torch here
        prediction = prediction.detach().cpu().float().numpy()
    return np.asarray(prediction)


def _predict_callable(model: Any, batch: np.ndarray) -> Any:
    import torch  # only user models that are plain torch modules get here

    with torch.inference_mode():
        return model(torch.from_numpy(batch))


class DefaultFunctions:
    """The built-in input_fn / predict_fn / output_fn, usable one by one inside a user handler."""

    def __init__(self, input_shape: tuple[int, int, int], top_k: int) -> None:
        self.input_shape = input_shape
        self.top_k = top_k

    def input_fn(self, body: bytes, content_type: str) -> np.ndarray:
        out = np.empty(self.input_shape, dtype=np.float32)
        vision.decode_into(body, vision.media_type(content_type), out)
        return out

    def predict_fn(self, data: Any, model: Any) -> Any:
        batch = np.asarray(data, dtype=np.float32)
        batch = batch[None] if batch.ndim == len(self.input_shape) else batch
        if hasattr(model, "predict"):
            return model.predict(batch)
        if callable(model):
            return _predict_callable(model, batch)
        raise HandlerError(f"model_fn returned a {type(model).__name__}; define predict_fn to use it", 500)

    def output_fn(self, prediction: Any, accept: str, model: Any = None) -> tuple[bytes, str]:
        chosen = vision.negotiate_accept(accept)
        if chosen is None:
            raise HandlerError(f"unsupported Accept {accept!r}; use one of {list(vision.OUTPUT_TYPES)}", 406)
        logits = _to_numpy(prediction)
        logits = logits[0] if logits.ndim == 2 and logits.shape[0] == 1 else logits
        labels = model.labels if isinstance(model, VisionModel) else None
        return vision.encode_output(logits, chosen, labels, self.top_k), chosen


def normalise_output(result: Any, accept: str) -> tuple[bytes, str]:
    """output_fn / transform_fn may return body or (body, content_type); body may be str or data."""
    content_type = accept
    if isinstance(result, tuple) and len(result) == 2:
        result, content_type = result
    if isinstance(result, bytes | bytearray | memoryview):
        return bytes(result), content_type
    if isinstance(result, str):
        return result.encode(), content_type
    if isinstance(result, np.ndarray):
        return vision.npy_bytes(result), content_type
    return json.dumps(result).encode(), content_type


class UserPipeline:
    """User functions, one request at a time (Server-Timing: input/predict/output = decode/infer/encode)."""

    def __init__(
        self, module: ModuleType, model: Any, context: HandlerContext, defaults: DefaultFunctions, debug: bool
    ) -> None:
        self.model = model
        self.context = context
        self.debug = debug
        self.transform: Callable[..., Any] | None = None
        if callable(getattr(module, "transform_fn", None)):
            self.transform = bind(module.transform_fn, 4, context)
        self.input_fn = self._pick(module, "input_fn", 2, defaults.input_fn)
        self.predict_fn = self._pick(module, "predict_fn", 2, defaults.predict_fn)
        user_output = getattr(module, "output_fn", None)
        self.output_fn = (
            bind(user_output, 2, context)
            if callable(user_output)
            else lambda prediction, accept: defaults.output_fn(prediction, accept, model)
        )

    def _pick(
        self, module: ModuleType, name: str, base: int, default: Callable[..., Any]
    ) -> Callable[..., Any]:
        fn = getattr(module, name, None)
        return bind(fn, base, self.context) if callable(fn) else default

    def run(self, items: list[WorkItem]) -> list[WorkResult]:
        return [self._one(item) for item in items]

    def _one(self, item: WorkItem) -> WorkResult:
        accept = resolve_accept(item.accept)
        self.context.request_content_type, self.context.accept = item.content_type, accept
        try:
            if self.transform is not None:
                start = time.perf_counter()
                body, ctype = normalise_output(
                    self.transform(self.model, item.body, item.content_type, accept), accept
                )
                return WorkResult(item.rid, 200, body, ctype, (0.0, 0.0, time.perf_counter() - start, 0.0))
            return self._three_steps(item, accept)
        except Exception as exc:
            return error_result(item.rid, exc, self.debug)

    def _three_steps(self, item: WorkItem, accept: str) -> WorkResult:
        t0 = time.perf_counter()
        data = self.input_fn(item.body, item.content_type)
        t1 = time.perf_counter()
        prediction = self.predict_fn(data, self.model)
        t2 = time.perf_counter()
        body, ctype = normalise_output(self.output_fn(prediction, accept), accept)
        t3 = time.perf_counter()
        return WorkResult(item.rid, 200, body, ctype, (t1 - t0, 0.0, t2 - t1, t3 - t2))
