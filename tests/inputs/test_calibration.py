"""The int8 calibration set: images made on first use, their digest cached for later processes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from deploybench.inputs import calibration
from deploybench.inputs.calibration import CalibrationSet, calibration_digest, calibration_source_paths

SHAPE = (3, 224, 224)


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
