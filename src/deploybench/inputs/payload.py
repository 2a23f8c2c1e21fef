"""Sample payloads and THE reference preprocessing: the server and the variants' parity checks use it.

Resize the short side to 256 (bilinear), centre-crop 224, scale to [0, 1], normalise with the
ImageNet mean and std, CHW float32 — torchvision's classic ImageNet evaluation transform.
"""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
RESIZE = 256
CROP = 224
MAX_PIXELS = 40_000_000  # far beyond any camera photo; larger declared sizes are treated as bombs
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class PayloadError(ValueError):
    """The bytes are not an image we can decode safely (malformed, truncated, bomb)."""


def default_payload_path() -> Path:
    """The bundled ~20 KB JPEG (a CC0 photo of a cat; see data/PROVENANCE.md)."""
    return Path(str(resources.files("deploybench.data").joinpath("cat.jpg")))


def _payload_files(folder: Path, content_type: str | None) -> list[Path]:
    """Image files for image bodies (the default); every visible file for other content types."""
    if content_type is None or content_type.startswith(("image/", "application/x-image")):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise PayloadError(f"{folder}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        return files
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise PayloadError(f"{folder}: folder holds no files")
    return files


def read_payloads(path: Path, content_type: str | None = None) -> list[bytes]:
    """Read one file, or a folder's request bodies in name order; empty input is an error.

    A folder gives its image files, or, for a non-image `content_type` (JSON, CSV, npy...), every
    visible file in it.
    """
    if path.is_dir():
        files = _payload_files(path, content_type)
    elif path.is_file():
        files = [path]
    else:
        raise PayloadError(f"{path}: no such file or folder")
    bodies = [p.read_bytes() for p in files]
    empty = [str(p) for p, body in zip(files, bodies, strict=True) if not body]
    if empty:
        raise PayloadError(f"empty payload file(s): {', '.join(empty)}")
    return bodies


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode to RGB, refusing huge declared sizes before any pixel is decompressed."""
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise PayloadError(f"image declares {width}x{height} pixels, over the limit of {max_pixels}")
        image.draft("RGB", (RESIZE, RESIZE))  # JPEG: let libjpeg decode at a reduced scale
        image.load()  # decode here, so truncated data fails inside this try
        return image if image.mode == "RGB" else image.convert("RGB")  # convert() would copy RGB
    except PayloadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise PayloadError(f"cannot decode image: {exc}") from exc


def resize_and_crop(image: Image.Image) -> Image.Image:
    """Short side to RESIZE, then the centre CROP x CROP square.

    Resamples only the source box that lands in the crop (Pillow's `box`), which does less work than
    resizing the whole image then cropping; pixels match that two-step result within 1/255.
    """
    width, height = image.size
    scale = RESIZE / min(width, height)
    new_w, new_h = max(CROP, round(width * scale)), max(CROP, round(height * scale))
    left, top = (new_w - CROP) // 2, (new_h - CROP) // 2
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + CROP) * sx, (top + CROP) * sy)
    return image.resize((CROP, CROP), Image.Resampling.BILINEAR, box=box)


_SCALE = (1.0 / (255.0 * IMAGENET_STD)).reshape(3, 1, 1)
_SHIFT = (IMAGENET_MEAN / IMAGENET_STD).reshape(3, 1, 1)


def normalise(image: Image.Image, out: np.ndarray | None = None) -> np.ndarray:
    """HWC uint8 -> CHW float32 normalised, written into `out` when given (no temporaries)."""
    return normalise_pixels(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1), out)


def normalise_pixels(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """CHW uint8 (any decoder's crop, inputs/decoders.py) -> CHW float32 normalised, into `out`."""
    if out is None:
        out = np.empty(pixels.shape, dtype=np.float32)
    np.multiply(pixels, _SCALE, out=out, casting="unsafe")
    out -= _SHIFT
    return out


def preprocess(data: bytes, out: np.ndarray | None = None) -> np.ndarray:
    """Image bytes -> (3, 224, 224) float32, the model's input. Raises PayloadError on bad bytes."""
    return normalise(resize_and_crop(decode_image(data)), out)


def preprocess_image(image: Image.Image) -> np.ndarray:
    """Same as preprocess() for an already decoded image (calibration, parity inputs)."""
    return normalise(resize_and_crop(image.convert("RGB")))
