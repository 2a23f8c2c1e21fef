"""The timing helpers: a variant's raw samples, and the preprocessing stages timed apart."""

from __future__ import annotations

import pytest

from deploybench.backends.eager import TorchModuleVariant
from deploybench.inputs.calibration import parity_inputs
from deploybench.inputs.payload import default_payload_path
from deploybench.models.loaded import LoadedModel
from deploybench.variants.timing import time_preprocessing, time_variant


def test_timing_keeps_raw_samples(tiny: LoadedModel) -> None:
    variant = TorchModuleVariant("eager", "fp32", tiny.module, 0.0)
    timing = time_variant(variant, parity_inputs(count=2), threads=1, budget_s=0.2)
    assert timing.batch == 2 and timing.threads == 1 and len(timing.samples) >= 5
    assert timing.p99_ms >= timing.p90_ms >= timing.median_ms > 0
    assert timing.images_per_s == pytest.approx(2000 / timing.median_ms)


def test_preprocessing_timing_splits_stages() -> None:
    timing = time_preprocessing(default_payload_path().read_bytes(), budget_s=0.2)
    assert timing.runs >= 15
    assert 0 < timing.decode_us < timing.median_us * 2
    assert timing.resize_crop_us > 0 and timing.normalise_us > 0
