"""Parity inside a server worker, for backends rebuilt in every server process (inductor, TensorRT).

Those variants are compiled again in each worker, so the variant that serves is not the one the
study verified. A worker therefore verifies its own build against eager fp32 at every batch size its
batcher may form (1..max_batch_size) before it reports ready: /ping stays red for a broken build.
It also compiles each batch shape once, before traffic arrives rather than during a measurement.
A reduced-precision build of a random-weight model is held to the sanity floor, as in the study,
whose trained stand-in already judged the backend's numerics (backends/stand_in.py).
"""

from __future__ import annotations

from deploybench.backends.base import Variant, all_backends
from deploybench.config import ParityThresholds
from deploybench.inputs.calibration import parity_inputs
from deploybench.models.loaded import LoadedModel
from deploybench.models.sources import logits_for
from deploybench.results import ParityReport
from deploybench.variants.parity import check_parity, served_batch_sizes
from deploybench.variants.stand_in import needs_stand_in

WORKER_PARITY_INPUTS = 8


class ServedParityError(RuntimeError):
    """The variant built in this server process failed the parity gate; the worker must not serve it."""


def verify_served_variant(
    variant: Variant, model: LoadedModel, max_batch_size: int, thresholds: ParityThresholds | None = None
) -> ParityReport | None:
    """Gate a worker's own build (None: its backend loads a verified artifact, nothing to redo).

    Raises ServedParityError with the gate's reason when the build is rejected.
    """
    backend = all_backends().get(variant.backend)
    if backend is None or not backend.rebuilt_per_process:
        return None
    inputs = parity_inputs(model.input_shape, WORKER_PARITY_INPUTS)
    reference = logits_for(model, inputs)
    floor_only = needs_stand_in(model.weights, variant.precision)
    sizes = served_batch_sizes(max_batch_size)
    report = check_parity(variant, inputs, reference, thresholds, sizes, floor_only=floor_only)
    if report.verdict == "rejected":
        raise ServedParityError(
            f"{variant.backend} built in this server worker failed parity: {report.reason}"
        )
    return report
