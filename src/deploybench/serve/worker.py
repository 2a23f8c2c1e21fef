"""The model worker process: build and warm the model once, then answer batches until the front goes.

Spawned (not forked) so each worker starts with a clean interpreter and its own thread pools.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from deploybench.config import Decoder
from deploybench.inputs.decoders import check_decoder
from deploybench.inputs.payload import default_payload_path
from deploybench.lifetime import die_with_parent
from deploybench.sagemaker.codecs import decode_into
from deploybench.sagemaker.context import HandlerContext
from deploybench.sagemaker.contract import load_user_module
from deploybench.serve import inflight, placement
from deploybench.serve.builtin import BuiltinPipeline, VisionModel
from deploybench.serve.protocol import FAILED, READY
from deploybench.serve.settings import ServeSettings


def _isolate_signals() -> None:
    """Ctrl-C and SIGTERM are for the front: it drains, then closes our connection, and we exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _build_vision_model(settings: ServeSettings) -> Any:
    # lazy: torch loads in the worker, never in the front process that names this module as its spawn target
    from deploybench.backends.build import build_variant, example_batch

    # lazy: torch: in the worker only (see _build_vision_model)
    from deploybench.variants.served import verify_served_variant

    server = settings.server
    if settings.model is None:
        raise ValueError("no model to build: give --model, or a model file in the model folder")
    variant, loaded = build_variant(
        settings.model,
        server.backend,
        threads=server.threads,
        cache_dir=settings.cache_dir,
        runtime=server.runtime,
    )
    verify_served_variant(variant, loaded, server.max_batch_size)  # raises: /ping never goes green
    for size in variant.warm_up_sizes(server.max_batch_size):
        variant.predict(example_batch(loaded, size))
    info = {
        "model": loaded.name,
        "backend": variant.backend,
        "precision": variant.precision,
        "weights": loaded.weights,
        "build_seconds": round(variant.build_seconds, 3),
        "runtime_settings": variant.runtime_settings(),
    }
    return VisionModel(variant, loaded.labels, loaded.input_shape, settings.top_k, info)


def _warm_preprocessing(model: Any, decoder: Decoder) -> None:
    if model.input_shape == (3, 224, 224):
        import numpy as np

        decode_into(
            default_payload_path().read_bytes(),
            "image/jpeg",
            np.empty(model.input_shape, np.float32),
            decoder,
        )


def build_pipeline(settings: ServeSettings, index: int) -> tuple[Any, dict[str, Any]]:
    """The built-in pipeline, or the user's handler with the SageMaker PyTorch toolkit's defaults.
    A decoder other than Pillow is checked first (inputs/decoders.py: CUDA, the agreement gate)."""
    path = settings.handler_path
    if path is None:
        decoder = settings.server.runtime.decoder
        check_decoder(decoder, settings.model.payload if settings.model is not None else None)
        model = _build_vision_model(settings)
        _warm_preprocessing(model, decoder)
        server = settings.server
        pipeline = BuiltinPipeline(model, server.max_batch_size, server.debug, decoder)
        return pipeline, {**model.info, "handler": "builtin", "decoder": decoder}
    return _build_user_pipeline(settings, path, index)


def _build_user_pipeline(settings: ServeSettings, path: Any, index: int) -> tuple[Any, dict[str, Any]]:
    # lazy: torch: in the worker only (a user handler's toolkit defaults need it)
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
    gatherer = None
    if own_network:  # --backend other than eager: its variant stands in for the network
        model, gatherer, served = behind_handler(settings, module, model, context)
        info.update(served)
    debug = settings.server.debug
    pipeline = UserPipeline(functions, model, context, settings.default_accept, debug, gatherer)
    return pipeline, {**info, "handler": path.name}


def worker_main(
    index: int, conn: Connection, settings_json: str, cores: tuple[int, ...] | None = None
) -> None:
    """Process entry point: take our cores, report READY (with what was loaded and how it runs) or
    FAILED (with why), then serve. Cores and thread settings come first: runtimes read them once."""
    die_with_parent(signal.SIGKILL)  # the front process died: no one reads our answers
    _isolate_signals()
    settings = ServeSettings.model_validate_json(settings_json)
    pinned = placement.apply_cores(cores)
    server = settings.server
    placement.apply_environment(placement.worker_environment(server.threads, server.runtime))
    start = time.perf_counter()
    try:
        pipeline, info = build_pipeline(settings, index)
    except Exception as exc:
        conn.send_bytes(pickle.dumps((FAILED, f"{type(exc).__name__}: {exc}")))
        return
    depth = inflight.inflight_depth(settings.server, settings.handler_path is None)
    pipelines = inflight.replicate(pipeline, depth, settings.server.runtime.streams)
    info.update(
        pid=os.getpid(),
        worker=index,
        load_seconds=round(time.perf_counter() - start, 3),
        cores=sorted(os.sched_getaffinity(0)) if pinned else None,
        inflight=len(pipelines),
        threads_allowed=placement.thread_affinities(),
    )
    conn.send_bytes(pickle.dumps((READY, info)))
    inflight.serve_batches(conn, pipelines, settings.server.debug)
    # The front has gone or asked us to stop: skip the slow interpreter teardown of torch/openvino.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
