"""A backend's variant served behind the user's own SageMaker handler: their code runs unchanged.

worker.build_pipeline calls `behind_handler` once the handler's model_fn (or the toolkit's default)
has run. Backend eager serves the handler exactly as SageMaker would. Any other backend builds its
variant from the network model_fn returned, through the very LoadedModel the study built
(models/sagemaker.py, describe_network: same input shape, calibration and fingerprint, so the same
cached artifact), and a NetworkStandIn running the variant takes the network's place as the model
every handler function receives (sagemaker/standin.py). When the server batches, the stand-in's calls
go through a CallGatherer, so the network calls of a batch's requests run as one predict. When the
handler needs what a variant cannot give (handler_check's verdict), the worker refuses to start and
says why: a variant is never served silently in place of code it would skip.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from deploybench.backends.build import build_variant
from deploybench.config import ModelSpec
from deploybench.models.sagemaker import UserHandler, describe_network, is_sagemaker_source
from deploybench.sagemaker.standin import NetworkStandIn
from deploybench.serve.gather import CallGatherer
from deploybench.serve.settings import ServeSettings

REFERENCE = "eager"


class VariantRefusedError(ValueError):
    """A variant cannot stand in for the handler's network (the message says why)."""


def names_another_network(settings: ServeSettings) -> bool:
    """--model names a network other than the handler's own (the archive itself, as a study passes it
    for artifact cache keys, is the handler's own)."""
    return settings.model is not None and not is_sagemaker_source(settings.model.source)


def _spec(settings: ServeSettings) -> ModelSpec:
    """The archive as the study named it (so the artifact cache keys match); else the model folder."""
    spec: ModelSpec | None = settings.model
    if spec is None or names_another_network(settings):
        base = spec.model_dump() if spec is not None else {}
        spec = ModelSpec(**{**base, "source": str(settings.model_dir or Path())})
    return spec


def behind_handler(
    settings: ServeSettings, module: ModuleType, model: Any, context: Any
) -> tuple[Any, CallGatherer | None, dict[str, Any]]:
    """(model object for the handler, the gatherer when batching, worker info): the network as model_fn
    returned it for eager, else a stand-in running the backend's variant."""
    backend = settings.server.backend
    if backend == REFERENCE:
        return model, None, {"backend": REFERENCE, "network": "yours (the handler as is)"}
    spec = _spec(settings)
    handler = UserHandler(module, settings.model_dir or Path(), context, settings.program)
    loaded = describe_network(spec, handler, model)
    check = loaded.handler
    assert check is not None
    if check.limit:
        raise VariantRefusedError(
            f"backend {backend!r} cannot stand in for your network: {check.limit}; "
            "serve it with --backend eager"
        )
    server = settings.server
    variant, _ = build_variant(
        spec, backend, threads=server.threads, cache_dir=settings.cache_dir, model=loaded
    )
    sample = loaded.sample_inputs if loaded.sample_inputs is not None else np.zeros((1, *loaded.input_shape))
    for _ in range(2):  # warm-up: the first calls allocate, pick kernels and fill caches
        variant.predict(np.ascontiguousarray(sample[:1], dtype=np.float32))
    gatherer = None
    if server.max_batch_size > 1:
        gatherer = CallGatherer(variant.predict, server.max_batch_size * check.rows_per_call)
    stand_in = NetworkStandIn(gatherer or variant.predict, loaded.module, loaded.input_shape, variant.backend)
    info = {
        "backend": variant.backend,
        "precision": variant.precision,
        "weights": loaded.weights,
        "build_seconds": round(variant.build_seconds, 3),
        "network": f"the {variant.backend} variant stands in for it ({check.summary})",
    }
    return stand_in, gatherer, info
