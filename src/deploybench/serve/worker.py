"""The model worker process: build and warm the model once, then answer batches until the front goes.

Spawned (not forked) so each worker starts with a clean interpreter and its own thread pools.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from deploybench.serve.protocol import BATCH, FAILED, READY, RESULTS
from deploybench.serve.settings import ServeSettings

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the front process dies, so no worker outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _isolate_signals() -> None:
    """Ctrl-C and SIGTERM are for the front: it drains, then closes our connection, and we exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _build_vision_model(settings: ServeSettings) -> Any:
    from deploybench.backends.build import build_variant, example_batch
    from deploybench.backends.served import verify_served_variant
    from deploybench.serve.handlers import VisionModel

    if settings.model is None:
        raise ValueError("no model to build: give --model, or a model file in the model folder")
    variant, loaded = build_variant(
        settings.model, settings.server.backend, threads=settings.server.threads, cache_dir=settings.cache_dir
    )
    verify_served_variant(variant, loaded, settings.server.max_batch_size)  # raises: /ping never goes green
    for size in (1, 1, settings.server.max_batch_size):
        variant.predict(example_batch(loaded, size))
    info = {
        "model": loaded.name,
        "backend": variant.backend,
        "precision": variant.precision,
        "weights": loaded.weights,
        "build_seconds": round(variant.build_seconds, 3),
    }
    return VisionModel(variant, loaded.labels, loaded.input_shape, settings.top_k, info)


def _warm_preprocessing(model: Any) -> None:
    from deploybench.payload import default_payload_path
    from deploybench.serve.vision import decode_into

    if model.input_shape == (3, 224, 224):
        import numpy as np

        decode_into(
            default_payload_path().read_bytes(), "image/jpeg", np.empty(model.input_shape, np.float32)
        )


def build_pipeline(settings: ServeSettings, index: int) -> tuple[Any, dict[str, Any]]:
    """The built-in pipeline, or the user's handler with the SageMaker PyTorch toolkit's defaults."""
    from deploybench.serve.handlers import BuiltinPipeline

    path = settings.handler_path
    if path is None:
        model = _build_vision_model(settings)
        _warm_preprocessing(model)
        pipeline = BuiltinPipeline(model, settings.server.max_batch_size, settings.server.debug)
        return pipeline, {**model.info, "handler": "builtin"}
    return _build_user_pipeline(settings, path, index)


def _build_user_pipeline(settings: ServeSettings, path: Any, index: int) -> tuple[Any, dict[str, Any]]:
    from deploybench.serve.context import HandlerContext
    from deploybench.serve.handlers import load_user_module
    from deploybench.serve.user import UserPipeline, resolve_functions
    from deploybench.serve.variant_handler import behind_handler, names_another_network

    sys.path.extend(str(p) for p in settings.extra_paths)  # requirements installed in isolation
    module = load_user_module(path)
    model_dir = str(settings.model_dir)
    context = HandlerContext(model_dir, index, settings.server.max_batch_size)
    functions = resolve_functions(module, context)
    info: dict[str, Any] = {"model": f"model_fn from {path.name}"}
    own_network = True
    if not callable(getattr(module, "model_fn", None)):
        if names_another_network(settings):  # --model stands in for model_fn: a deploybench variant
            vision_model = _build_vision_model(settings)
            functions = functions.replace(model_fn=lambda _: vision_model)
            info, own_network = dict(vision_model.info), False
        else:
            info = {"model": "TorchScript model file (the PyTorch toolkit's default model_fn)"}
    model = functions.load_model(model_dir)
    if own_network:  # --backend other than eager: its variant of this network stands in for predict_fn
        functions, model, served = behind_handler(settings, module, functions, model, context)
        info.update(served)
    pipeline = UserPipeline(functions, model, context, settings.default_accept, settings.server.debug)
    return pipeline, {**info, "handler": path.name}


def _results_frame(pipeline: Any, items: list[Any], debug: bool) -> bytes:
    """The batch's answers, pickled. Should the pipeline fail as a whole (or a result not pickle),
    every request of the batch gets that error: exceptions never end a worker, only crashes do."""
    from deploybench.serve.errors import error_result

    try:
        return pickle.dumps((RESULTS, pipeline.run(items)), protocol=pickle.HIGHEST_PROTOCOL)
    except (Exception, SystemExit) as exc:
        return pickle.dumps((RESULTS, [error_result(item.rid, exc, debug) for item in items]))


def _serve(conn: Connection, pipeline: Any, debug: bool) -> None:
    while True:
        try:
            kind, payload = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the front closed the connection: shut down
        if kind == BATCH:
            conn.send_bytes(_results_frame(pipeline, payload, debug))


def worker_main(index: int, conn: Connection, settings_json: str) -> None:
    """Process entry point: report READY (with what was loaded) or FAILED (with why), then serve."""
    _die_with_parent()
    _isolate_signals()
    settings = ServeSettings.model_validate_json(settings_json)
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(settings.server.threads)
    # A worker shares the cores with the HTTP front (and, in a study, the load client): spinning
    # OpenMP threads then steal their CPU and eager PyTorch served 0.4 instead of 5.8 req/s under
    # contention here. Passive waiting unless the user chose otherwise.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    start = time.perf_counter()
    try:
        pipeline, info = build_pipeline(settings, index)
    except Exception as exc:
        conn.send_bytes(pickle.dumps((FAILED, f"{type(exc).__name__}: {exc}")))
        return
    info.update(pid=os.getpid(), worker=index, load_seconds=round(time.perf_counter() - start, 3))
    conn.send_bytes(pickle.dumps((READY, info)))
    _serve(conn, pipeline, settings.server.debug)
    # The front has gone or asked us to stop: skip the slow interpreter teardown of torch/openvino.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
