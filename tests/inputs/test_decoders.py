"""The decoder knob's image path (inputs/decoders.py): torchvision's pixels against Pillow's, hostile
bodies, the Pillow fallback, the agreement gate, and the server's codec with each decoder."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploybench.inputs import decoders
from deploybench.inputs.decoders import (
    MAX_DIFFERENCE,
    DecoderRefusedError,
    check_decoder,
    disagreement,
    gate_photos,
    pixels,
)
from deploybench.inputs.payload import CROP, PayloadError, default_payload_path, preprocess
from deploybench.sagemaker.codecs import decode_into
from deploybench.sagemaker.errors import ServeError

# torchvision 0.29 warns on every decode that its image I/O moves to TorchCodec (docs/measurements.md)
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
CAT = default_payload_path().read_bytes()
TORCHVISION = "torchvision"


def _encoded(image: Image.Image, kind: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def _bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares a huge image (a decompression bomb by its header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _max_difference(data: bytes) -> int:
    ours = pixels(data, TORCHVISION).astype(np.int16)
    return int(np.abs(ours - pixels(data, "pillow").astype(np.int16)).max())


def test_torchvision_pixels_agree_with_pillows_on_the_gate_photos() -> None:
    photos = gate_photos()
    assert default_payload_path() in photos and len(photos) > 50  # cat.jpg and the labelled set
    for photo in photos:
        data = photo.read_bytes()
        assert pixels(data, TORCHVISION).shape == (3, CROP, CROP)
        assert _max_difference(data) <= MAX_DIFFERENCE, photo.name
    assert disagreement(TORCHVISION, photos) is None
    assert not isinstance(decoders.decode(CAT, TORCHVISION), Image.Image)  # torchvision decoded it


def test_the_gate_refuses_a_decoder_further_than_two_levels_from_pillow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = decoders.pixels

    def brighter(data: bytes, decoder: str) -> np.ndarray:
        found = real(data, decoder)  # type: ignore[arg-type]
        return found if decoder == "pillow" else np.minimum(found.astype(np.int16) + 3, 255).astype(np.uint8)

    monkeypatch.setattr(decoders, "pixels", brighter)
    why = disagreement(TORCHVISION, [default_payload_path()])
    assert why is not None and "by 3/255 on cat.jpg" in why and "2/255" in why
    with pytest.raises(DecoderRefusedError, match=r"by \d/255"):
        check_decoder(TORCHVISION)


@pytest.mark.parametrize(
    "body",
    [b"", b"not an image", b"\xff\xd8\xff\xe0" + b"\0" * 40, CAT[: len(CAT) // 2], _bomb_png()],
    ids=["empty", "text", "jpeg-header-only", "truncated-jpeg", "bomb"],
)
def test_hostile_bodies_are_a_payload_error_as_with_pillow(body: bytes) -> None:
    with pytest.raises(PayloadError):
        pixels(body, "pillow")
    with pytest.raises(PayloadError):
        pixels(body, TORCHVISION)


def test_a_bomb_is_refused_by_its_header_before_torchvision_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.io

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("torchvision was asked to decode a bomb")

    monkeypatch.setattr(torchvision.io, "decode_image", never)
    with pytest.raises(PayloadError, match="over the limit"):  # ours: Pillow's own limit is higher
        decoders.decode(_bomb_png(8000, 8000), TORCHVISION)


CAT_IMAGE = Image.open(io.BytesIO(CAT)).convert("RGB")
# (mode, format): grey, alpha, palette and 16-bit PNGs; grey and CMYK JPEGs; WebP, BMP, GIF
KINDS = [
    ("L", "PNG"),
    ("RGBA", "PNG"),
    ("LA", "PNG"),
    ("P", "PNG"),
    ("I;16", "PNG"),
    ("L", "JPEG"),
    ("CMYK", "JPEG"),
    ("RGB", "WEBP"),
    ("RGB", "BMP"),
    ("P", "GIF"),
]


@pytest.mark.parametrize(("mode", "kind"), KINDS, ids=[f"{m}-{k}" for m, k in KINDS])
def test_every_image_kind_is_preprocessed_as_rgb_within_the_gate(mode: str, kind: str) -> None:
    data = _encoded(CAT_IMAGE.convert(mode), kind)
    assert pixels(data, TORCHVISION).shape == (3, CROP, CROP)
    assert _max_difference(data) <= MAX_DIFFERENCE


@pytest.mark.parametrize(("mode", "kind"), [("CMYK", "JPEG"), ("RGB", "WEBP"), ("RGB", "BMP"), ("P", "GIF")])
def test_what_torchvision_does_not_decode_as_pillow_goes_to_pillow(mode: str, kind: str) -> None:
    data = _encoded(CAT_IMAGE.convert(mode), kind)
    assert isinstance(decoders.decode(data, TORCHVISION), Image.Image)
    assert _max_difference(data) == 0


def test_the_server_codec_fills_the_same_float_layout_and_answers_400_on_bad_bytes() -> None:
    ours, theirs = np.empty((3, CROP, CROP), np.float32), np.empty((3, CROP, CROP), np.float32)
    decode_s, prep_s = decode_into(CAT, "image/jpeg", ours, TORCHVISION)
    decode_into(CAT, "image/jpeg", theirs)
    assert decode_s > 0 and prep_s > 0  # Server-Timing's decode and preprocess spans
    assert np.abs(ours - theirs).max() <= MAX_DIFFERENCE / 255 / 0.224 + 1e-6  # the smallest std
    with pytest.raises(ServeError) as refused:
        decode_into(b"garbage", "image/jpeg", ours, TORCHVISION)
    assert refused.value.status_code == 400
    with pytest.raises(ServeError, match="over the limit") as bomb:
        decode_into(_bomb_png(8000, 8000), "image/png", ours, TORCHVISION)
    assert bomb.value.status_code == 400


def test_pillow_stays_the_reference_preprocessing_byte_for_byte() -> None:
    out = np.empty((3, CROP, CROP), np.float32)
    decode_into(CAT, "image/jpeg", out)
    assert out.tobytes() == preprocess(CAT).tobytes()
    check_decoder("pillow")  # the reference needs no gate


def test_a_study_payload_is_gated_first(tmp_path: Path) -> None:
    photo = tmp_path / "mine.png"
    photo.write_bytes(_encoded(CAT_IMAGE, "PNG"))
    assert gate_photos(photo)[0] == photo
    assert gate_photos(tmp_path)[0] == photo


def test_the_gpu_decoder_is_refused_without_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available: the GPU decoder may serve")
    with pytest.raises(DecoderRefusedError, match="needs a CUDA device"):
        check_decoder("torchvision-cuda")


def test_the_gpu_decoder_agrees_with_pillow_where_cuda_is() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    assert pixels(CAT, "torchvision-cuda").shape == (3, CROP, CROP)
    assert disagreement("torchvision-cuda", gate_photos()) is None
    check_decoder("torchvision-cuda")


def test_torchvisions_deprecation_of_its_decoder_stays_out_of_the_request_path() -> None:
    """The filter the worker installs once matches torchvision's own warning (its wording may move)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # as a user running with -W always, or a test runner
        decoders.quiet_deprecation()
        for _ in range(3):
            assert not isinstance(decoders.decode(CAT, TORCHVISION), Image.Image)
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)], caught
