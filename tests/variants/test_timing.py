"""Calibration images, the artifact cache and the timing helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploybench.backends.eager import TorchModuleVariant
from deploybench.cache import default_cache_root, variant_cache_dir
from deploybench.inputs.calibration import (
    calibration_images,
    calibration_source_paths,
    parity_inputs,
    parity_source_paths,
)
from deploybench.inputs.payload import default_payload_path
from deploybench.models.loaded import LoadedModel
from deploybench.variants.timing import time_preprocessing, time_variant


def test_calibration_images_are_varied_natural_photos() -> None:
    images = calibration_images(count=24)
    assert len(images) == 24 and all(i.shape == (3, 224, 224) and i.dtype == np.float32 for i in images)
    stds = [float(i.std()) for i in images]
    assert min(stds) > 0.1  # never blank
    flat = np.stack(images).reshape(24, -1)
    assert len({round(float(x), 3) for x in flat.mean(axis=1)}) > 20  # augmented, not repeated
    # natural photos are smooth: neighbouring pixels correlate strongly, unlike white noise
    assert np.mean([np.corrcoef(i[0, :, :-1].ravel(), i[0, :, 1:].ravel())[0, 1] for i in images]) > 0.8


def test_calibration_from_a_user_folder_and_other_input_shapes(tmp_path: Path) -> None:
    Image.open(default_payload_path()).save(tmp_path / "a.png")
    images = calibration_images((3, 160, 128), count=5, folder=tmp_path)
    assert len(images) == 5 and images[0].shape == (3, 160, 128)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image files"):
        calibration_images(count=2, folder=empty)


def test_parity_inputs_come_from_other_photos_than_calibration() -> None:
    """Parity draws from its own photos (never a calibration photo) and adds smooth colour fields."""
    assert not {p.name for p in parity_source_paths()} & {p.name for p in calibration_source_paths()}
    assert len(calibration_source_paths()) >= 10 and len(parity_source_paths()) >= 4
    parity = parity_inputs(count=40)
    assert parity.shape == (40, 3, 224, 224)
    assert all(float(image.std()) > 0.05 for image in parity)


def test_cache_dir_is_keyed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = variant_cache_dir("m", "abc", "openvino", {"x": 1}, tmp_path)
    assert base == variant_cache_dir("m", "abc", "openvino", {"x": 1}, tmp_path)
    others = {
        variant_cache_dir("m", "abd", "openvino", {"x": 1}, tmp_path),
        variant_cache_dir("m", "abc", "onnxruntime", {"x": 1}, tmp_path),
        variant_cache_dir("m", "abc", "openvino", {"x": 2}, tmp_path),
    }
    assert base not in others and len(others) == 3
    assert '"versions"' in (base / "key.json").read_text()
    monkeypatch.setenv("DEPLOYBENCH_CACHE", str(tmp_path / "env"))
    assert default_cache_root() == tmp_path / "env"


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
