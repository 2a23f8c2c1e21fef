"""In-process timing of a variant (per batch size and thread count) and of the reference preprocessing.

Like torch.utils.benchmark: warm up, then repeat until a time budget is spent (with a floor and a
ceiling on the number of runs), keep every raw sample, derive median/p90/p99 and flag the
measurement as noisy when the interquartile range exceeds 10% of the median.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from pydantic import Field

from deploybench.backends.base import Variant
from deploybench.config import StrictModel
from deploybench.inputs.payload import decode_image, normalise, resize_and_crop

NOISY_IQR_RATIO = 0.10


class Timing(StrictModel):
    """One (batch, threads) measurement of a variant; samples are raw per-call milliseconds."""

    batch: int
    threads: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    images_per_s: float
    iqr_ratio: float
    noisy: bool
    warmup: int
    samples: list[float] = Field(default_factory=list)
    passes: int = Field(1, description="interleaved timing passes; the fastest pass's samples are kept")


def faster(first: Timing, second: Timing) -> Timing:
    """The faster of two passes over the same point: noise on a shared host only ever slows a run."""
    best = first if first.median_ms <= second.median_ms else second
    return best.model_copy(update={"passes": first.passes + second.passes})


class PreprocessTiming(StrictModel):
    """Per-request preprocessing cost on one thread, split by stage (medians in microseconds)."""

    payload_bytes: int
    median_us: float
    p90_us: float
    decode_us: float
    resize_crop_us: float
    normalise_us: float
    runs: int
    noisy: bool


def _repeat(
    call: Callable[[], object], *, warmup: int, min_runs: int, max_runs: int, budget_s: float
) -> list[float]:
    """Raw seconds per call: `warmup` discarded calls, then runs until the budget (min..max runs)."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < max_runs and (len(samples) < min_runs or time.perf_counter() < deadline):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def _iqr_ratio(samples_ms: np.ndarray) -> float:
    q1, median, q3 = np.percentile(samples_ms, [25, 50, 75])
    return float((q3 - q1) / median) if median > 0 else 0.0


def time_variant(
    variant: Variant,
    batch: np.ndarray,
    *,
    threads: int,
    budget_s: float = 3.0,
    warmup: int = 3,
    min_runs: int = 5,
    max_runs: int = 1000,
) -> Timing:
    """Time variant.predict on one batch with `threads` intra-op threads (torch's pool; other runtimes
    fix their threads when built)."""
    torch.set_num_threads(threads)
    seconds = _repeat(
        lambda: variant.predict(batch), warmup=warmup, min_runs=min_runs, max_runs=max_runs, budget_s=budget_s
    )
    samples = np.array(seconds) * 1000.0
    median = float(np.median(samples))
    ratio = _iqr_ratio(samples)
    return Timing(
        batch=len(batch),
        threads=threads,
        median_ms=median,
        p90_ms=float(np.percentile(samples, 90)),
        p99_ms=float(np.percentile(samples, 99)),
        images_per_s=len(batch) * 1000.0 / median,
        iqr_ratio=ratio,
        noisy=ratio > NOISY_IQR_RATIO,
        warmup=warmup,
        samples=[round(s, 4) for s in samples.tolist()],
    )


def time_preprocessing(payload: bytes, *, budget_s: float = 1.0, max_runs: int = 2000) -> PreprocessTiming:
    """Time the server's per-request work on one thread: decode, resize 256 + crop 224, normalise."""
    previous = torch.get_num_threads()
    out = np.empty((3, 224, 224), dtype=np.float32)
    stages: dict[str, list[float]] = {"decode": [], "resize": [], "normalise": [], "total": []}

    def one_request() -> None:
        t0 = time.perf_counter()
        image = decode_image(payload)
        t1 = time.perf_counter()
        cropped = resize_and_crop(image)
        t2 = time.perf_counter()
        normalise(cropped, out)
        t3 = time.perf_counter()
        for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
            stages[key].append(value * 1e6)

    try:
        torch.set_num_threads(1)
        _repeat(one_request, warmup=0, min_runs=20, max_runs=max_runs, budget_s=budget_s)
    finally:
        torch.set_num_threads(previous)
    total = np.array(stages["total"][5:])  # the first calls warm caches
    return PreprocessTiming(
        payload_bytes=len(payload),
        median_us=float(np.median(total)),
        p90_us=float(np.percentile(total, 90)),
        decode_us=float(np.median(stages["decode"][5:])),
        resize_crop_us=float(np.median(stages["resize"][5:])),
        normalise_us=float(np.median(stages["normalise"][5:])),
        runs=len(total),
        noisy=_iqr_ratio(total) > NOISY_IQR_RATIO,
    )
