"""The study's first step: build, verify (parity gate) and time every backend in-process.

Its summary decides which backends are served and where batching knobs are worth sweeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploybench.backends.base import all_backends, honoured_knobs
from deploybench.hardware import usable_cores
from deploybench.results import AccuracyReport, ParityReport
from deploybench.study.plan import VariantSummary
from deploybench.study.space import detect_shape, largest_batch, study_grid
from deploybench.study.spec import StudyConfig, study_model_spec
from deploybench.variants.parity import served_batch_sizes

if TYPE_CHECKING:  # torch loads with it; a cluster's driver and the report need no torch
    # lazy: torch loads only where variants are built, never to read them back
    from deploybench.variants.verify import VariantsReport


@dataclass
class VariantsOutcome:
    raw: dict[str, Any]
    summaries: list[VariantSummary]
    parity: dict[str, ParityReport] = field(default_factory=dict)
    weights: str = "random"
    accuracy: dict[str, AccuracyReport] = field(default_factory=dict)


def median_low_ms(samples: list[float], fallback: float) -> float:
    """The low end of a distribution-free 95% interval on the median (order statistics: the
    binomial(n, 1/2) rank k with at most 2.5% below it); the fastest sample when too few for one,
    `fallback` with none. Per-call times are skewed by the host's noise, so no normal interval."""
    ordered = sorted(samples)
    n = len(ordered)
    if not n:
        return fallback
    rank = math.floor((n - 1.96 * math.sqrt(n)) / 2)  # 0-based: the normal approximation's rank
    return ordered[max(0, min(rank, n - 1))]


def _upper_images_per_s(timing: Any) -> float:
    low = median_low_ms(list(timing.samples), timing.median_ms)
    return timing.batch * 1000.0 / low if low > 0 else timing.images_per_s


def _summary(variant: Any) -> VariantSummary:
    images_per_s = {t.batch: t.images_per_s for t in variant.timings}
    high = {t.batch: _upper_images_per_s(t) for t in variant.timings}
    if not variant.available:  # labelled with the precision it would run (none was read back)
        requested = getattr(all_backends().get(variant.backend), "precision", None)
        return VariantSummary(variant.backend, "unavailable", variant.unavailable_reason, requested)
    if variant.error:
        return VariantSummary(variant.backend, "error", f"build failed: {variant.error}")
    parity = variant.parity
    if parity is not None and parity.verdict == "rejected":
        return VariantSummary(
            variant.backend,
            "rejected",
            f"parity failed: {parity.reason}",
            variant.precision,
            images_per_s=images_per_s,
        )
    return VariantSummary(
        variant.backend,
        "passed",
        None,
        variant.precision,
        getattr(variant, "device", "cpu"),
        images_per_s,
        honoured_knobs(variant.backend),
        high,
    )


def summarise(report: VariantsReport) -> VariantsOutcome:
    parity = {v.backend: v.parity for v in report.variants if v.parity is not None}
    accuracy = {v.backend: v.accuracy for v in report.variants if v.accuracy is not None}
    return VariantsOutcome(
        report.model_dump(mode="json"),
        [_summary(v) for v in report.variants],
        parity,
        report.weights,
        accuracy,
    )


def summaries_from_json(raw: dict[str, Any]) -> VariantsOutcome:
    # lazy: torch loads only where variants are built, never to read them back
    from deploybench.variants.verify import VariantsReport

    return summarise(VariantsReport.model_validate(raw))


def parity_sizes(config: StudyConfig) -> list[int]:
    """Every batch size a served CPU candidate may form (1..the CPU grid's largest), each batch size of
    every device's grid (a GPU's 32 and 64), and those timed. Not every size up to 64: checking each
    would cost each backend minutes, and a GPU runtime runs the sizes between on the same engine."""
    shape = detect_shape()
    host = shape.model_copy(update={"gpu": None, "gpus": 0})
    grids = {b for device in ("cpu", "cuda") for b in study_grid(config, shape, device).max_batch_size}
    served = served_batch_sizes(largest_batch(config, host))
    return sorted(set(served) | grids | set(config.variant_batch_sizes))


def evaluate_study_variants(
    config: StudyConfig, cache_dir: Path | None, on_stage: Callable[[str], None]
) -> VariantsOutcome:
    # lazy: torch loads only where variants are built (a Ray driver builds none)
    from deploybench.variants.verify import evaluate_variants

    report = evaluate_variants(
        study_model_spec(config),
        config.backends,
        batch_sizes=tuple(config.variant_batch_sizes),
        threads=(usable_cores(),),  # the default candidate's threads: 1 worker on every core
        passes=2,  # the plan ranks backends on these timings: one disturbed pass must not prune one
        thresholds=config.parity,
        cache_dir=cache_dir,
        time_budget_s=config.timing_budget_s,
        on_progress=on_stage,
        eval_data=config.eval_data,
        parity_batch_sizes=parity_sizes(config),
    )
    return summarise(report)
