"""A backend's variant served behind the user's own SageMaker handler: their input_fn / output_fn stay.

worker.build_pipeline calls `behind_handler` once the handler's model_fn (or the toolkit's default)
has run. Backend eager serves the handler exactly as SageMaker would. Any other backend builds its
variant from the network model_fn returned, through the very LoadedModel the study built
(models/sagemaker.py, describe_network: same input shape, calibration and fingerprint, so the same
cached artifact), and the variant's predict takes predict_fn's place in the HandlerFunctions when
handler_check allows it. When it does not (predict_fn does
more than call the model, transform_fn, a model_fn value that is no nn.Module), the worker refuses
to start and says why: a variant is never served silently in place of code it would skip.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from deploybench.backends.build import build_variant
from deploybench.config import ModelSpec
from deploybench.models.sagemaker import UserHandler, describe_network, is_sagemaker_source
from deploybench.sagemaker.handler_check import HandlerCheck, as_batch
from deploybench.serve.settings import ServeSettings
from deploybench.serve.user import HandlerFunctions

REFERENCE = "eager"


class VariantRefusedError(ValueError):
    """The handler's predict_fn cannot be replaced by a variant (the message says why)."""


class VariantPredictFn:
    """predict_fn(data, model) running the variant on what input_fn returned, answering in the form
    (tensor / array / list, batch axis or not) the user's own predict_fn answered in."""

    def __init__(self, variant: Any, check: HandlerCheck) -> None:
        self.variant = variant
        self.check = check

    def __call__(self, data: Any, model: Any) -> Any:
        return self.check.wrap(self.variant.predict(as_batch(data)))


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
    settings: ServeSettings, module: ModuleType, functions: HandlerFunctions, model: Any, context: Any
) -> tuple[HandlerFunctions, Any, dict[str, Any]]:
    """(handler functions, model, worker info) to serve: as they are for eager, else the variant inside."""
    backend = settings.server.backend
    if backend == REFERENCE:
        return functions, model, {"backend": REFERENCE, "predict_fn": "yours (the handler as is)"}
    spec = _spec(settings)
    handler = UserHandler(module, settings.model_dir or Path(), context, settings.program)
    loaded = describe_network(spec, handler, model)
    assert loaded.handler is not None
    if loaded.handler.limit:
        raise VariantRefusedError(
            f"backend {backend!r} cannot stand in for predict_fn: {loaded.handler.limit}; "
            "serve it with --backend eager"
        )
    variant, _ = build_variant(
        spec, backend, threads=settings.server.threads, cache_dir=settings.cache_dir, model=loaded
    )
    sample = loaded.sample_inputs if loaded.sample_inputs is not None else np.zeros((1, *loaded.input_shape))
    for _ in range(2):  # warm-up: the first calls allocate, pick kernels and fill caches
        variant.predict(as_batch(sample[:1]))
    info = {
        "backend": variant.backend,
        "precision": variant.precision,
        "weights": loaded.weights,
        "build_seconds": round(variant.build_seconds, 3),
        "predict_fn": f"the {variant.backend} variant ({loaded.handler.reason})",
    }
    return functions.replace(predict_fn=VariantPredictFn(variant, loaded.handler)), variant, info
