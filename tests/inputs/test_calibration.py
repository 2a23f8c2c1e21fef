"""Calibration and parity images (natural photos, a user's folder, other input shapes), and the int8
calibration set: images made on first use, their digest cached for later processes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploybench.inputs import calibration
from deploybench.inputs.calibration import (
    CalibrationSet,
    calibration_digest,
    calibration_images,
    calibration_source_paths,
    parity_inputs,
    parity_source_paths,
)
from deploybench.inputs.payload import default_payload_path

SHAPE = (3, 224, 224)


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


def _no_images_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a fresh worker process is: no calibration images in memory; making them fails the test."""

    def refuse(*_: object, **__: object) -> list[np.ndarray]:
        raise AssertionError("calibration images were made")

    calibration._calibration_cached.cache_clear()
    monkeypatch.setattr(calibration, "augmented_arrays", refuse)


def test_a_cached_digest_names_the_artifact_without_making_the_images(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made = CalibrationSet(SHAPE, cache_root=tmp_path).digest()
    assert made == calibration_digest(calibration.calibration_images(SHAPE))
    _no_images_made(monkeypatch)
    assert CalibrationSet(SHAPE, cache_root=tmp_path).digest() == made


def test_changed_photos_or_an_own_preprocess_are_never_named_from_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for source in calibration_source_paths()[:2]:
        shutil.copy(source, folder / source.name)
    before = CalibrationSet(SHAPE, folder, cache_root=tmp_path).digest()
    first = sorted(folder.iterdir())[0]
    shutil.copy(calibration_source_paths()[3], first)  # same name, other photo
    calibration._calibration_cached.cache_clear()  # a later process: nothing decoded in memory
    calibration._decoded.cache_clear()
    after = CalibrationSet(SHAPE, folder, cache_root=tmp_path).digest()
    assert after != before

    def own(image: object) -> np.ndarray:
        return np.zeros(SHAPE, np.float32)

    _no_images_made(monkeypatch)
    with pytest.raises(AssertionError, match="images were made"):  # an input_fn's images: no cache key
        CalibrationSet(SHAPE, folder, own, cache_root=tmp_path).digest()
