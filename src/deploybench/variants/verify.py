"""Build, verify and time every backend variant of one model: the API the CLI and the study use.

The eager fp32 variant is built first and is the parity reference. An unavailable backend is listed
with its reason; a backend that throws while building is recorded with its error; neither stops the
others. Only variants that pass parity should ever be recommended. Parity runs at every batch size
up to the largest one timed (or served), and with labelled data (`eval_data`) every verified variant
gets top-1 / top-5 and its paired comparison with eager (backends/accuracy.py). On a random-weight
model, reduced-precision variants are judged on a trained stand-in too (backends/stand_in.py).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pydantic import Field

from deploybench.backends.base import BackendUnavailableError, UnknownBackendError, Variant, all_backends
from deploybench.backends.build import build_variant
from deploybench.config import ModelSpec, ParityThresholds, StrictModel, is_random_weights
from deploybench.inputs.calibration import (
    calibration_source_paths,
    describe_calibration,
    parity_inputs,
    parity_source_paths,
)
from deploybench.inputs.labelled import check_disjoint, load_labelled
from deploybench.inputs.payload import default_payload_path
from deploybench.models.loaded import LoadedModel
from deploybench.models.sources import load_model
from deploybench.results import AccuracyReport, ParityReport
from deploybench.variants import accuracy
from deploybench.variants.parity import predict_in_chunks, reference_report, served_batch_sizes
from deploybench.variants.stand_in import StandIn, judge_variant
from deploybench.variants.timing import PreprocessTiming, Timing, faster, time_preprocessing, time_variant

REFERENCE = "eager"
PARITY_INPUTS = 32
THREAD_ENV_PREFIXES = ("OMP_", "MKL_", "KMP_", "GOMP_", "LD_PRELOAD")


class VariantReport(StrictModel):
    """One backend's outcome: built or not (and why), parity verdict, build cost and timings."""

    backend: str
    description: str = ""
    available: bool
    unavailable_reason: str | None = None
    error: str | None = None
    precision: str | None = None
    device: str = "cpu"
    parity: ParityReport | None = None
    accuracy: AccuracyReport | None = Field(None, description="labelled top-1/top-5 and the drop vs eager")
    build_seconds: float | None = None
    artifact_bytes: int | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    timings: list[Timing] = Field(default_factory=list)
    speedup_vs_eager: float | None = Field(
        None, description="eager median / this median, first batch & threads"
    )

    @property
    def usable(self) -> bool:
        """Built and passed (or is) the parity reference: the only variants that may be recommended."""
        return self.parity is not None and self.parity.verdict in ("passed", "reference")


class VariantsReport(StrictModel):
    """Every variant of one model, with the weights it carries and the per-request preprocessing cost."""

    model: str
    weights: str = Field(description="pretrained | random | file:<path>; shown in every output")
    input_shape: tuple[int, int, int]
    fingerprint: str
    calibration: str = Field("", description="where int8 scales came from; disjoint from parity and eval")
    parity_inputs: str = ""
    eval_data: str | None = Field(None, description="the labelled set every verified variant was scored on")
    handler: str | None = Field(
        None, description="a SageMaker handler: whether variants replace its predict_fn, and why (or not)"
    )
    stand_in: str = Field("", description="which variants a trained stand-in judged, and its cost")
    preprocessing: PreprocessTiming | None = None
    variants: list[VariantReport] = Field(default_factory=list)
    thread_env: dict[str, str] = Field(
        default_factory=dict,
        description="OMP/MKL/KMP settings: libgomp's spin-wait makes torch collapse on busy cores",
    )
    load_average: list[float] = Field(default_factory=list, description="1-min load at start and at end")
    cores: int | None = None

    @property
    def busy(self) -> bool:
        """Other work competed for the cores: timings (and ratios) are unreliable."""
        return bool(self.cores and self.load_average and max(self.load_average) > self.cores + 0.5)


def resolve_backends(names: Sequence[str] | None) -> list[str]:
    """The requested backends (all registered ones by default), eager first; unknown names raise."""
    known = all_backends()
    wanted = list(names) if names else list(known)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise UnknownBackendError(
            f"unknown backend(s) {', '.join(map(repr, unknown))}; known backends: {', '.join(sorted(known))}"
        )
    return [REFERENCE] + [name for name in dict.fromkeys(wanted) if name != REFERENCE]


class _Run:
    """The state of one evaluate_variants call: model, inputs, reference logits, progress reporting."""

    def __init__(
        self,
        model: LoadedModel,
        cache_dir: Path | None,
        thresholds: ParityThresholds,
        on_progress: Callable[[str], None] | None,
        calibration_dir: Path | None,
        parity_sizes: Sequence[int],
        eval_batches: accuracy.EvalBatches | None,
    ) -> None:
        self.model = model
        self.cache_dir = cache_dir
        self.calibration_dir = calibration_dir
        self.thresholds = thresholds
        self.on_progress = on_progress
        self.parity_sizes = list(parity_sizes)
        self.inputs = parity_set(model, PARITY_INPUTS)
        self.reference: np.ndarray | None = None
        self.batches: dict[int, np.ndarray] = {}
        self.eval_batches = eval_batches
        self.eval_reference: accuracy.Outcome | None = None
        self.stand_in = (
            StandIn(thresholds, self.parity_sizes, cache_dir, calibration_dir, self.say)
            if is_random_weights(model.weights)
            else None
        )

    def say(self, message: str) -> None:
        if self.on_progress is not None:
            self.on_progress(message)

    def batch(self, size: int) -> np.ndarray:
        """Timing batches are real (augmented) photos, repeated to the batch size."""
        if size not in self.batches:
            self.batches[size] = np.ascontiguousarray(np.resize(self.inputs, (size, *self.inputs.shape[1:])))
        return self.batches[size]

    def build(self, backend: str, threads: int) -> Variant:
        return build_variant(
            self.model.spec,
            backend,
            threads=threads,
            cache_dir=self.cache_dir,
            model=self.model,
            calibration_dir=self.calibration_dir,
        )[0]

    def parity(self, backend: str, variant: Variant, threads: int) -> ParityReport:
        if backend == REFERENCE:
            self.reference = predict_in_chunks(variant, self.inputs)
            return reference_report(len(self.inputs))
        assert self.reference is not None, "the eager reference is evaluated first"
        self.say(f"{backend}: parity at batch sizes {self.parity_sizes[0]}..{self.parity_sizes[-1]}")
        return judge_variant(
            variant, self.inputs, self.reference, self.thresholds, self.parity_sizes, self.stand_in, threads
        )

    def accuracy(self, backend: str, variant: Variant) -> AccuracyReport | None:
        """Labelled accuracy of a verified variant (eager first: the others are compared with it)."""
        if self.eval_batches is None:
            return None
        self.say(f"{backend}: scoring {len(self.eval_batches.data.paths)} labelled images")
        outcome = accuracy.evaluate(variant.predict, self.eval_batches)
        described = self.eval_batches.data.describe()
        if backend == REFERENCE:
            self.eval_reference = outcome
            return accuracy.absolute_report(outcome, described)
        assert self.eval_reference is not None, "the eager reference is scored first"
        return accuracy.compare(self.eval_reference, outcome, described)


def parity_set(model: LoadedModel, count: int) -> np.ndarray:
    """The user's own requests first (a SageMaker payload through input_fn), then fresh photos."""
    own = np.empty((0, *model.input_shape), dtype=np.float32)
    if model.sample_inputs is not None:
        own = model.sample_inputs[:count]
    if len(own) >= count:
        return np.ascontiguousarray(own, dtype=np.float32)
    photos = parity_inputs(model.input_shape, count - len(own), preprocess=model.preprocess)
    return np.concatenate([own.astype(np.float32), photos])


def _unavailable(backend: str, description: str, reason: str) -> VariantReport:
    return VariantReport(backend=backend, description=description, available=False, unavailable_reason=reason)


def _error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def _evaluate_one(
    run: _Run, backend: str, batch_sizes: Sequence[int], threads: Sequence[int], budget_s: float
) -> tuple[VariantReport, Variant | None]:
    """The backend's report, and its verified variant at threads[0] (for later passes), else None."""
    impl = all_backends()[backend]()
    availability = impl.availability()
    if not availability.ok:
        return _unavailable(backend, impl.description, availability.reason), None
    limit = run.model.handler.limit if run.model.handler is not None else None
    if limit and backend != REFERENCE:
        return _unavailable(backend, impl.description, limit), None
    report = VariantReport(backend=backend, description=impl.description, available=True)
    kept: Variant | None = None
    try:
        for index, thread_count in enumerate(threads):
            run.say(f"{backend}: building ({thread_count} threads)")
            variant = run.build(backend, thread_count)  # runtimes fix their thread pools when built
            if index == 0:
                parity = run.parity(backend, variant, thread_count)
                _record_build(report, variant, through_handler(run.model, backend, variant, parity))
                if report.usable:
                    report.accuracy = run.accuracy(backend, variant)
                    kept = variant
            for size in batch_sizes:
                run.say(f"{backend}: timing batch {size}, {thread_count} threads")
                report.timings.append(
                    time_variant(variant, run.batch(size), threads=thread_count, budget_s=budget_s)
                )
            del variant
            gc.collect()
    except BackendUnavailableError as exc:
        return _unavailable(backend, impl.description, str(exc)), None
    except Exception as exc:  # a backend that fails to build is a result, not a crash
        report.error = _error_text(exc)
        kept = None
    return report, kept


def _another_pass(run: _Run, kept: dict[str, Variant], reports: list[VariantReport], budget_s: float) -> None:
    """Time batch 1 of every kept variant again, after all the others ran, and keep the faster pass.

    One disturbance (a neighbour on the host, a runtime's threads landing on one core) can halve a
    backend's timing and get it pruned; spread over the whole step, two passes rarely both catch it.
    """
    for report in reports:
        variant = kept.get(report.backend)
        first = next((i for i, t in enumerate(report.timings) if t.batch == 1), None)
        if variant is None or first is None:
            continue
        timing = report.timings[first]
        run.say(f"{report.backend}: timing batch 1 again ({timing.threads} threads)")
        try:
            again = time_variant(variant, run.batch(1), threads=timing.threads, budget_s=budget_s)
        except Exception as exc:  # it ran in the first pass: a failure now is a result too
            report.error = _error_text(exc)
            continue
        report.timings[first] = faster(timing, again)


def through_handler(model: LoadedModel, backend: str, variant: Variant, parity: ParityReport) -> ParityReport:
    """A passed variant of a SageMaker handler's network, also run behind the user's own code: its
    answers must keep their form (keys, lengths, shapes); the numbers were judged at the network."""
    if model.through_handler is None or parity.verdict != "passed":
        return parity
    try:
        diff = model.through_handler(variant.predict, backend)
    except Exception as exc:  # the user's code with the variant inside
        why = f"your handler fails with the {backend} variant inside: {_error_text(exc)}"
        return parity.model_copy(update={"verdict": "rejected", "reason": why, "through_handler": why})
    text = diff.describe()
    if diff.form is not None:
        why = f"through your handler: {text}"
        return parity.model_copy(update={"verdict": "rejected", "reason": why, "through_handler": text})
    return parity.model_copy(update={"through_handler": text})


def _record_build(report: VariantReport, variant: Variant, parity: ParityReport) -> None:
    report.precision = variant.precision
    report.device = variant.device
    report.build_seconds = variant.build_seconds
    report.artifact_bytes = variant.artifact_bytes
    report.versions = dict(variant.versions)
    report.parity = parity


def _add_speedups(reports: list[VariantReport]) -> None:
    eager = next((r for r in reports if r.backend == REFERENCE and r.timings), None)
    if eager is None:
        return
    base = eager.timings[0]
    for report in reports:
        match = [t for t in report.timings if (t.batch, t.threads) == (base.batch, base.threads)]
        if match:
            report.speedup_vs_eager = base.median_ms / match[0].median_ms


def _eval_batches(
    model: LoadedModel, eval_data: Path | str | None, calibration_dir: Path | None
) -> accuracy.EvalBatches | None:
    """Read and check the labelled set before anything is built (never a calibration image)."""
    if eval_data is None:
        return None
    data = load_labelled(eval_data, model.labels)
    check_disjoint(data, calibration_source_paths(calibration_dir))
    return accuracy.EvalBatches(data, model.input_shape)


def evaluate_variants(
    spec: ModelSpec,
    backends: list[str] | None = None,
    *,
    batch_sizes: Sequence[int] = (1, 8),
    threads: Sequence[int] = (2,),
    thresholds: ParityThresholds | None = None,
    cache_dir: Path | None = None,
    time_budget_s: float = 120.0,
    on_progress: Callable[[str], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    payload: bytes | None = None,
    calibration_dir: Path | None = None,
    eval_data: Path | str | None = None,
    parity_batch_sizes: Sequence[int] | None = None,
    passes: int = 1,
) -> VariantsReport:
    """Build, verify and time each backend (all registered ones when None).

    time_budget_s is spread evenly over the (backend x batch x threads) timing points, each getting
    0.5-10 s (always at least 5 timed runs). on_progress receives one line per stage; on_step gets
    (backends done, backends in total). Parity runs at parity_batch_sizes (default: 1..largest timed
    batch). passes > 1: batch 1 is timed that many times, the passes spread over the whole step, and
    the fastest kept (the study ranks backends on it). Raises UnknownBackendError, ModelLoadError and
    LabelledDataError up front.
    """
    names = resolve_backends(backends)
    model = load_model(spec, cache_dir)
    calibration_dir = calibration_dir or spec.calibration_data
    eval_batches = _eval_batches(model, eval_data, calibration_dir)
    sizes = sorted(set(parity_batch_sizes or served_batch_sizes(max(batch_sizes))))
    run = _Run(
        model, cache_dir, thresholds or ParityThresholds(), on_progress, calibration_dir, sizes, eval_batches
    )
    run.say("timing the per-request preprocessing")
    report = VariantsReport(
        model=model.name,
        weights=model.weights,
        input_shape=model.input_shape,
        fingerprint=model.fingerprint,
        calibration=describe_calibration(calibration_dir),
        parity_inputs=(
            f"{PARITY_INPUTS} inputs from {len(parity_source_paths())} parity photos (none a calibration"
            f" photo) and smooth colour fields, at batch sizes {', '.join(map(str, sizes))}"
        ),
        eval_data=eval_batches.data.describe() if eval_batches else None,
        handler=model.handler.summary if model.handler is not None else None,
        # a handler's input_fn is its preprocessing: the reference pipeline's cost says nothing about it
        preprocessing=None
        if model.handler is not None
        else time_preprocessing(payload or default_payload_path().read_bytes()),
        thread_env={k: v for k, v in os.environ.items() if k.startswith(THREAD_ENV_PREFIXES)},
        load_average=[os.getloadavg()[0]],
        cores=os.cpu_count(),
    )
    points = max(1, len(names) * len(batch_sizes) * len(threads))
    budget = min(10.0, max(0.5, time_budget_s / points))
    kept: dict[str, Variant] = {}
    for done, name in enumerate(names):
        if on_step is not None:
            on_step(done, len(names))
        started = time.perf_counter()
        variant_report, variant = _evaluate_one(run, name, batch_sizes, threads, budget)
        report.variants.append(variant_report)
        if variant is not None and passes > 1:
            kept[name] = variant
        run.say(f"{name}: done in {time.perf_counter() - started:.1f} s")
    for _ in range(passes - 1):
        _another_pass(run, kept, report.variants, budget)
    kept.clear()
    gc.collect()
    if on_step is not None:
        on_step(len(names), len(names))
    _add_speedups(report.variants)
    report.stand_in = run.stand_in.describe() if run.stand_in else ""
    report.load_average.append(os.getloadavg()[0])
    return report
