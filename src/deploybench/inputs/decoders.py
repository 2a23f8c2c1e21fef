"""Where a request's image is decoded and resized: RuntimeKnobs.decoder, a serving knob of its own.

- pillow: THE reference preprocessing (payload.py), unchanged;
- torchvision: torchvision.io's decoder (libjpeg-turbo, libpng) and the antialiased resize of
  transforms.v2 on the uint8 tensor, then the centre crop; about 0.73 ms of CPU per image against
  Pillow's 1.09 ms (bench/preprocessing_placement.py);
- torchvision-cuda: JPEG decoded and resized on the GPU (nvJPEG), only where CUDA is available.

Every decoder ends in the same CHW uint8 crop, normalised by payload.normalise_pixels into the same
float32 layout. Hostile bodies behave as with Pillow: the header is read first with Pillow's lazy
Image.open (no pixel decoded), so unreadable bytes and declared sizes over MAX_PIXELS are a
PayloadError before torchvision sees them; what torchvision does not decode the way Pillow does
(formats and modes outside TORCHVISION_MODES, e.g. CMYK JPEG or WebP, 16-bit PNG, or any error of
its own, a truncated JPEG included) goes to Pillow for that request, which decodes it or raises
PayloadError. torch loads on the first non-Pillow decode only (the front process never imports it).
"""

from __future__ import annotations

import functools
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from deploybench.config import Decoder
from deploybench.inputs.payload import (
    CROP,
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    RESIZE,
    PayloadError,
    decode_image,
    resize_and_crop,
)

PILLOW: Decoder = "pillow"
# What torchvision decodes as Pillow does (format -> Pillow modes); anything else is Pillow's.
TORCHVISION_MODES = {"JPEG": frozenset({"RGB", "L"}), "PNG": frozenset({"RGB", "RGBA", "L", "LA", "P"})}
TORCHVISION_DEPRECATION = "The image decoding and encoding capabilities of TorchVision are deprecated"
MAX_DIFFERENCE = 2  # of 255: the agreement gate's limit on a decoder's pixels against Pillow's


class DecoderRefusedError(ValueError):
    """A decoder the server must not start with here (no CUDA, or pixels too far from Pillow's)."""


def _header(data: bytes) -> tuple[str | None, str]:
    """(format, mode) from the header alone; PayloadError for unreadable bytes or a bomb."""
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise PayloadError(f"cannot decode image: {exc}") from exc
    if width * height > MAX_PIXELS:
        raise PayloadError(f"image declares {width}x{height} pixels, over the limit of {MAX_PIXELS}")
    return image.format, image.mode


def quiet_deprecation() -> None:
    """torchvision 0.29 deprecates its image decoding for TorchCodec's (0.16, not on this project's
    package index) and warns on every call; the decoder is the same libjpeg-turbo until it is
    removed, and the agreement gate would refuse a replacement that decodes otherwise. One filter,
    for that warning alone, installed once per process (_quiet_once), keeps it out of the log of a
    server run with -W default; pyproject.toml gives pytest the same filter."""
    warnings.filterwarnings("ignore", message=TORCHVISION_DEPRECATION, category=DeprecationWarning)


_quiet_once = functools.cache(quiet_deprecation)  # the request path pays a cache lookup, not a filter


def _torchvision_decode(data: bytes, gpu: bool) -> Any:
    """The uint8 CHW RGB tensor, or None where torchvision fails or decodes otherwise than Pillow."""
    # lazy: torch loads in the workers that use this decoder, never in the front or for Pillow
    import torch

    _quiet_once()
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    kind, mode = _header(data)
    if mode not in TORCHVISION_MODES.get(kind or "", ()):
        return None
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:
        if gpu and kind == "JPEG":
            image = decode_jpeg(encoded, mode=ImageReadMode.RGB, device="cuda")
        else:
            image = decode_image(encoded, mode=ImageReadMode.RGB)
    except RuntimeError:  # truncated or malformed: Pillow decides (it raises PayloadError)
        return None
    return image if image.dtype == torch.uint8 and image.ndim == 3 else None  # 16-bit PNG: Pillow's


def decode(data: bytes, decoder: Decoder) -> Any:
    """The decoded image: a uint8 CHW tensor from torchvision, else a Pillow RGB image (payload.py).
    Raises PayloadError on bytes no decoder may read (malformed, truncated, a bomb)."""
    if decoder != PILLOW:
        image = _torchvision_decode(data, gpu=decoder == "torchvision-cuda")
        if image is not None:
            return image
    return decode_image(data)


def crop_pixels(image: Any) -> np.ndarray:
    """Short side to RESIZE (antialiased bilinear), the centre CROP x CROP square, as CHW uint8 numpy.
    A Pillow image takes the reference path (payload.resize_and_crop); a tensor stays on its device
    until the crop is made."""
    if isinstance(image, Image.Image):
        return np.asarray(resize_and_crop(image), dtype=np.uint8).transpose(2, 0, 1)
    # lazy: only a torchvision-decoded tensor comes here
    import torchvision.transforms.v2.functional as tvf

    height, width = image.shape[-2:]
    scale = RESIZE / min(width, height)
    new_w, new_h = max(CROP, round(width * scale)), max(CROP, round(height * scale))
    resized = tvf.resize(image, [new_h, new_w], antialias=True)
    top, left = (new_h - CROP) // 2, (new_w - CROP) // 2
    return resized[:, top : top + CROP, left : left + CROP].cpu().numpy()


def pixels(data: bytes, decoder: Decoder) -> np.ndarray:
    """One body's CHW uint8 crop with `decoder` (PayloadError on bad bytes)."""
    return crop_pixels(decode(data, decoder))


def gate_photos(payload: Path | None = None) -> list[Path]:
    """The photos the agreement gate compares on: the study's payload (a file, or a folder's images),
    the parity photos (cat.jpg and scikit-image's, when installed) and the bundled labelled set."""
    # lazy: the server's request path (sagemaker/codecs.py) imports this module, the gate runs once
    from deploybench.inputs.calibration import parity_source_paths
    from deploybench.inputs.labelled import bundled_labelled_dir

    labelled = sorted(p for p in bundled_labelled_dir().rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [*own_photos(payload), *parity_source_paths(), *labelled]


def own_photos(payload: Path | None) -> list[Path]:
    """The study's payload as photos: the file, or a folder's images (none for other bodies)."""
    if payload is not None and payload.is_dir():
        return sorted(p for p in payload.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if payload is not None and payload.suffix.lower() in IMAGE_SUFFIXES:
        return [payload]
    return []


def disagreement(decoder: Decoder, photos: list[Path]) -> str | None:
    """THE agreement gate: why `decoder` may not serve (None: it may).

    Served pixels must be the reference's within MAX_DIFFERENCE/255 (max abs, uint8, after resize and
    crop) on every photo, so a model verified and measured on Pillow's input is served the same input
    whichever decoder runs; a larger difference (say, a decoder that skips the antialiasing) would
    change predictions the parity gate never saw. A photo neither decoder reads is skipped."""
    worst, where = 0, ""
    for photo in photos:
        data = photo.read_bytes()
        try:
            reference = pixels(data, PILLOW).astype(np.int16)
        except PayloadError:
            continue
        difference = int(np.abs(pixels(data, decoder).astype(np.int16) - reference).max())
        if difference > worst:
            worst, where = difference, photo.name
    if worst > MAX_DIFFERENCE:
        return (
            f"decoder {decoder}: pixels differ from Pillow's by {worst}/255 on {where} (max abs after "
            f"resize and crop), over the limit of {MAX_DIFFERENCE}/255; serve with --decoder pillow"
        )
    return None


def check_decoder(decoder: Decoder, payload: Path | None = None) -> None:
    """Refuse (DecoderRefusedError) a decoder that cannot serve here: torchvision-cuda without a CUDA
    device, or one failing the agreement gate (disagreement). Pillow, the reference, always serves."""
    if decoder == PILLOW:
        return
    # lazy: torch, for the CUDA check only
    import torch

    if decoder == "torchvision-cuda" and not torch.cuda.is_available():
        raise DecoderRefusedError("decoder torchvision-cuda needs a CUDA device; none is visible here")
    why = disagreement(decoder, gate_photos(payload))
    if why is not None:
        raise DecoderRefusedError(why)
