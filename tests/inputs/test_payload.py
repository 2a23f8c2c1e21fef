"""THE reference preprocessing: shape, values, the fast crop-box resize, and bad bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploybench.inputs.payload import (
    CROP,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESIZE,
    PayloadError,
    decode_image,
    default_payload_path,
    preprocess,
    read_payloads,
    resize_and_crop,
)


def _two_step(image: Image.Image) -> Image.Image:
    """The textbook transform: resize the whole image, then centre-crop."""
    width, height = image.size
    scale = RESIZE / min(width, height)
    new_w, new_h = max(CROP, round(width * scale)), max(CROP, round(height * scale))
    resized = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - CROP) // 2, (new_h - CROP) // 2
    return resized.crop((left, top, left + CROP, top + CROP))


def test_default_payload_preprocesses_to_a_normalised_tensor() -> None:
    data = default_payload_path().read_bytes()
    assert 15_000 < len(data) < 30_000
    tensor = preprocess(data)
    assert tensor.shape == (3, 224, 224) and tensor.dtype == np.float32
    assert -2.2 < tensor.min() < tensor.max() < 2.7
    out = np.empty((3, 224, 224), np.float32)
    assert preprocess(data, out) is out and np.array_equal(out, tensor)


@pytest.mark.parametrize("size", [(336, 224), (451, 300), (1000, 700), (100, 130), (224, 224)])
def test_crop_box_resize_matches_the_two_step_transform(size: tuple[int, int]) -> None:
    photo = decode_image(default_payload_path().read_bytes()).resize(size)
    fast = np.asarray(resize_and_crop(photo), dtype=np.int16)
    slow = np.asarray(_two_step(photo), dtype=np.int16)
    assert fast.shape == slow.shape == (CROP, CROP, 3)
    assert np.abs(fast - slow).max() <= 1  # within one grey level
    assert (fast != slow).mean() < 0.05


def test_normalisation_uses_imagenet_statistics() -> None:
    grey = Image.new("RGB", (300, 300), (128, 128, 128))
    buffer = io.BytesIO()
    grey.save(buffer, "PNG")
    tensor = preprocess(buffer.getvalue())
    expected = (128 / 255 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(tensor[:, 100, 100], expected, rtol=1e-5)


def test_bad_bytes_and_bombs_are_payload_errors() -> None:
    with pytest.raises(PayloadError):
        preprocess(b"definitely not an image")
    truncated = default_payload_path().read_bytes()[:500]
    with pytest.raises(PayloadError):
        preprocess(truncated)
    buffer = io.BytesIO()
    Image.new("L", (8000, 6000)).save(buffer, "PNG")
    with pytest.raises(PayloadError, match="over the limit"):
        decode_image(buffer.getvalue(), max_pixels=1_000_000)


def test_read_payloads_file_folder_and_errors(tmp_path: Path) -> None:
    (tmp_path / "b.jpg").write_bytes(default_payload_path().read_bytes())
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("ignored")
    assert [len(b) for b in read_payloads(tmp_path)] == [1, len(default_payload_path().read_bytes())]
    with pytest.raises(PayloadError, match="no such file"):
        read_payloads(tmp_path / "absent.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(PayloadError, match="empty payload"):
        read_payloads(tmp_path)
