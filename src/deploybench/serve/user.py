"""A user's inference.py run with SageMaker semantics; missing functions are the PyTorch toolkit's defaults.

User functions see one request at a time (their data need not stack). A batch taken from the queue
is processed request by request, unless a variant stands in for the network and the server batches:
then the batch's requests run at once and their network calls meet in one predict (serve/gather.py).
HandlerFunctions is plain data so a caller can swap one function (a --model variant standing in for
model_fn, say); a variant standing in for the network changes no function, only the model they get.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from deploybench.sagemaker import toolkit
from deploybench.sagemaker.context import HandlerContext
from deploybench.sagemaker.contract import bind
from deploybench.sagemaker.errors import declared_status
from deploybench.serve.gather import CallGatherer, gathered_pool, run_in_threads
from deploybench.serve.protocol import WorkItem, WorkResult, error_result

log = logging.getLogger("deploybench.serve.worker")
ERROR_LOG_INTERVAL_S = 10.0  # one traceback per interval at most: a flood of bad requests is no log flood


@dataclass(frozen=True)
class HandlerFunctions:
    """The SageMaker handler functions, each bound to take its base arguments only."""

    model_fn: Callable[[str], Any]
    input_fn: Callable[[Any, str | None], Any]
    predict_fn: Callable[[Any, Any], Any]
    output_fn: Callable[[Any, str], Any]
    transform_fn: Callable[[Any, Any, str | None, str], Any] | None = None
    pre_model_fn: Callable[[str], Any] | None = None
    model_warmup_fn: Callable[[str, Any], Any] | None = None

    def replace(self, **changes: Any) -> HandlerFunctions:
        return dataclasses.replace(self, **changes)

    def load_model(self, model_dir: str) -> Any:
        """pre_model_fn, model_fn, model_warmup_fn: the toolkit's start-up sequence."""
        if self.pre_model_fn is not None:
            self.pre_model_fn(model_dir)
        model = self.model_fn(model_dir)
        if self.model_warmup_fn is not None:
            self.model_warmup_fn(model_dir, model)
        return model


_DEFAULTS: dict[str, Callable[..., Any]] = {
    "model_fn": toolkit.default_model_fn,
    "input_fn": toolkit.default_input_fn,
    "predict_fn": toolkit.default_predict_fn,
    "output_fn": toolkit.default_output_fn,
}
_ARGS = {"model_fn": 1, "input_fn": 2, "predict_fn": 2, "output_fn": 2, "transform_fn": 4}
_HOOK_ARGS = {"pre_model_fn": 1, "model_warmup_fn": 2}


def resolve_functions(module: ModuleType, context: HandlerContext) -> HandlerFunctions:
    """The module's functions with context bound where declared; the toolkit's defaults for the rest."""
    chosen: dict[str, Any] = {}
    for name, args in (_ARGS | _HOOK_ARGS).items():
        fn = getattr(module, name, None)
        if callable(fn):
            chosen[name] = bind(fn, args, context)
        elif name in _DEFAULTS:
            chosen[name] = _DEFAULTS[name]
    return HandlerFunctions(**chosen)


class _ErrorLog:
    """Tracebacks of unexpected handler errors, at most one per interval (with a count of the rest)."""

    def __init__(self) -> None:
        self.next_at = 0.0
        self.suppressed = 0

    def report(self, exc: BaseException) -> None:
        if declared_status(exc) is not None:
            return  # the handler chose this answer: nothing went wrong
        now = time.monotonic()
        if now < self.next_at:
            self.suppressed += 1
            return
        log.error("handler error (%d more since the last one logged)", self.suppressed, exc_info=exc)
        self.next_at, self.suppressed = now + ERROR_LOG_INTERVAL_S, 0


class UserPipeline:
    """User functions, one request at a time or a batch at once behind a stand-in (see _call's timings)."""

    def __init__(
        self,
        functions: HandlerFunctions,
        model: Any,
        context: HandlerContext,
        default_accept: str,
        debug: bool,
        gatherer: CallGatherer | None = None,
    ) -> None:
        self.functions = functions
        self.model = model
        self.context = context
        self.default_accept = default_accept
        self.debug = debug
        self.errors = _ErrorLog()
        self.gatherer = gatherer  # a variant behind the handler, batching: requests run at once
        self.pool = gathered_pool(context.system_properties["batch_size"]) if gatherer else None

    def run(self, items: list[WorkItem]) -> list[WorkResult]:
        return run_in_threads(self.gatherer, self.pool, self._one, items)

    def resolve_accept(self, header: str) -> str:
        """The toolkit's rule: a missing Accept or */* means SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT."""
        header = header.strip()
        return self.default_accept if not header or header == "*/*" else header

    def _one(self, item: WorkItem) -> WorkResult:
        accept = self.resolve_accept(item.accept)
        content_type = item.content_type or None  # absent: None, as the toolkit passes it
        self.context.begin(item.rid, item.headers, content_type, accept)
        try:
            body = toolkit.text_body(item.body, content_type)
            result, timings = self._call(body, content_type, accept)
            out, ctype = toolkit.response_body(result, accept)
        except (Exception, SystemExit) as exc:  # a handler calling sys.exit() must not end the worker
            self.errors.report(exc)
            return error_result(item.rid, exc, self.debug)
        status = self.context.response_status() or 200
        return WorkResult(item.rid, status, out, ctype, timings, self.context.response_headers())

    def _call(self, body: Any, content_type: str | None, accept: str) -> tuple[Any, tuple]:
        """Timings (decode, preprocess, infer, encode): input_fn, predict_fn's own work, the network's
        calls (a stand-in's, batch wait included; else all of predict_fn), output_fn."""
        fns = self.functions
        network_s: Callable[[], float | None] = getattr(self.model, "take_network_seconds", lambda: None)
        network_s()  # a failed request's leftover is not this one's
        t0 = time.perf_counter()
        if fns.transform_fn is not None:
            result = fns.transform_fn(self.model, body, content_type, accept)
            return result, self._split(0.0, time.perf_counter() - t0, network_s(), 0.0)
        data = fns.input_fn(body, content_type)
        t1 = time.perf_counter()
        prediction = fns.predict_fn(data, self.model)
        t2 = time.perf_counter()
        inside = network_s()
        result = fns.output_fn(prediction, accept)
        return result, self._split(t1 - t0, t2 - t1, inside, time.perf_counter() - t2)

    @staticmethod
    def _split(decode: float, predict: float, network: float | None, encode: float) -> tuple:  # type: ignore[type-arg]
        if network is None:
            return (decode, 0.0, predict, encode)
        return (decode, max(0.0, predict - network), network, encode)
