"""Natural images for int8 calibration and parity checks, from two disjoint sets of sample photos.

Calibration data decides int8 scales (and the BatchNorm statistics of random-weight networks, see
models.py), and parity inputs decide whether a variant may be ranked, so both must look like what
the model will see: real photos with crops, flips, colour jitter and rescaling, never zeros or
noise. They come from DIFFERENT photos: a parity input is never a calibration image, nor another
crop of one, so parity tests a variant on images its scales were not fitted to. The bundled
labelled set (data/labelled) is made from the parity photos, never from the calibration ones.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from deploybench.cache import default_cache_root, variant_cache_dir
from deploybench.inputs.payload import (
    CROP,
    IMAGE_SUFFIXES,
    RESIZE,
    decode_image,
    default_payload_path,
    normalise,
)

# scikit-image's CC0 / public-domain photos (see data/PROVENANCE.md), split into two disjoint sets.
CALIBRATION_PHOTOS = (
    "astronaut.png",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "retina.jpg",
    "coins.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "moon.png",
    "page.png",
)
PARITY_PHOTOS = ("coffee.png", "camera.png", "rocket.jpg")  # plus the payload cat.jpg (chelsea.png)
DEFAULT_CALIBRATION_COUNT = 100
Preprocess = Callable[[Image.Image], np.ndarray]  # one photo -> the model's CHW float32 input
CALIBRATION_SEED = 0
PARITY_SEED = 1


def _skimage_photo_paths(names: tuple[str, ...]) -> list[Path]:
    try:
        folder = Path(str(resources.files("skimage").joinpath("data")))
    except ModuleNotFoundError:
        return []
    return [folder / name for name in names if (folder / name).is_file()]


def image_files(folder: Path) -> list[Path]:
    """The image files directly inside a folder, sorted; a folder without any is an error."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"{folder}: calibration folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def calibration_source_paths(folder: Path | None = None) -> list[Path]:
    """The photos int8 calibration draws from: the user's folder, else the bundled calibration photos."""
    return image_files(folder) if folder is not None else _skimage_photo_paths(CALIBRATION_PHOTOS)


def parity_source_paths() -> list[Path]:
    """The photos parity inputs draw from: disjoint from the calibration photos by construction."""
    return [default_payload_path(), *_skimage_photo_paths(PARITY_PHOTOS)]


def describe_calibration(folder: Path | None, count: int = DEFAULT_CALIBRATION_COUNT) -> str:
    """One line for every output: where int8 scales came from, and that parity never sees them."""
    where = f"{folder}" if folder is not None else "the bundled calibration photos"
    return (
        f"int8 calibration: {count} images from {len(calibration_source_paths(folder))} photos in {where}; "
        "parity inputs and evaluation images are other photos (disjoint, checked)"
    )


@cache
def _decoded(paths: tuple[Path, ...]) -> tuple[Image.Image, ...]:
    return tuple(decode_image(p.read_bytes()).copy() for p in paths)


def to_model_input(image: Image.Image, input_shape: tuple[int, int, int]) -> np.ndarray:
    """The reference preprocessing (short side 256, centre crop 224, normalise), scaled to other sizes."""
    _, height, width = input_shape
    resize = round(min(height, width) * RESIZE / CROP)
    scale = resize / min(image.size)
    new_w, new_h = max(width, round(image.size[0] * scale)), max(height, round(image.size[1] * scale))
    image = image.convert("RGB").resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return normalise(image.crop((left, top, left + width, top + height)))


def augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random crop (35-100% of the area), rescale, flip and colour jitter of one photo."""
    width, height = image.size
    area = rng.uniform(0.35, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    crop_w = min(width, round(np.sqrt(area * width * height * aspect)))
    crop_h = min(height, round(np.sqrt(area * width * height / aspect)))
    left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
    image = image.crop((left, top, left + crop_w, top + crop_h))
    zoom = rng.uniform(0.6, 1.4)
    image = image.resize((max(32, round(crop_w * zoom)), max(32, round(crop_h * zoom))))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(rng.uniform(0.7, 1.3))
    if rng.random() < 0.2:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return image


def smooth_noise_image(rng: np.random.Generator, size: int = CROP) -> Image.Image:
    """A low-frequency colour field (random blobs, upsampled): natural-ish statistics, not white noise."""
    coarse = rng.integers(0, 256, size=(int(rng.integers(3, 9)),) * 2 + (3,), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    return image.filter(ImageFilter.GaussianBlur(size / 32))


def _converter(input_shape: tuple[int, int, int], preprocess: Preprocess | None) -> Preprocess:
    """The model's own photo -> input function (a SageMaker input_fn), else the reference one."""
    return preprocess or (lambda image: to_model_input(image, input_shape))


def augmented_arrays(
    count: int,
    seed: int,
    input_shape: tuple[int, int, int],
    sources: tuple[Path, ...],
    preprocess: Preprocess | None = None,
) -> list[np.ndarray]:
    """`count` preprocessed CHW images: every source photo once, then random augmentations of them."""
    photos = _decoded(sources)
    rng = np.random.default_rng(seed)
    images = list(photos[:count])
    while len(images) < count:
        images.append(augment(photos[int(rng.integers(len(photos)))], rng))
    convert = _converter(input_shape, preprocess)
    return [convert(image) for image in images]


@cache
def _calibration_cached(
    count: int, input_shape: tuple[int, int, int], folder: Path | None, preprocess: Preprocess | None
) -> tuple[np.ndarray, ...]:
    sources = tuple(calibration_source_paths(folder))
    return tuple(augmented_arrays(count, CALIBRATION_SEED, input_shape, sources, preprocess))


def calibration_images(
    input_shape: tuple[int, int, int] = (3, CROP, CROP),
    count: int = DEFAULT_CALIBRATION_COUNT,
    folder: Path | None = None,
    preprocess: Preprocess | None = None,
) -> list[np.ndarray]:
    """Calibration set for int8 backends (memoised per process: every backend sees the same images).

    `preprocess` is how a photo becomes this model's input when that is not the reference
    preprocessing: a SageMaker handler's own input_fn, so int8 scales fit what it feeds the network.
    """
    return list(_calibration_cached(count, tuple(input_shape), folder, preprocess))


def parity_inputs(
    input_shape: tuple[int, int, int] = (3, CROP, CROP),
    count: int = 32,
    preprocess: Preprocess | None = None,
) -> np.ndarray:
    """Fresh NCHW inputs for parity: the parity photos and their augmentations, plus ~1/8 smooth colour
    fields. None of them is, or is cropped from, a calibration photo."""
    rng = np.random.default_rng(PARITY_SEED)
    fields = max(1, count // 8)
    sources = tuple(parity_source_paths())
    photos = augmented_arrays(count - fields, PARITY_SEED, input_shape, sources, preprocess)
    convert = _converter(input_shape, preprocess)
    synthetic = [convert(smooth_noise_image(rng)) for _ in range(fields)]
    return np.stack(photos + synthetic).astype(np.float32)


def calibration_digest(images: list[np.ndarray]) -> str:
    """A short hash of the calibration set: int8 artifacts are keyed by the data that set their scales."""
    digest = hashlib.sha256()
    for image in images:
        digest.update(np.ascontiguousarray(image, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def _sources_stat(sources: list[Path]) -> list[list[object]]:
    return [[str(path), path.stat().st_size, path.stat().st_mtime_ns] for path in sources]


class CalibrationSet:
    """The int8 calibration images, made on first use, and their digest (the int8 artifacts' key).

    A server worker that loads a cached int8 artifact needs only the digest, to find it; making the
    100 images for it would add seconds to every int8 worker's start. So the digest of the reference
    preprocessing of these photos is cached on disk, keyed by the photos' paths, sizes and times;
    a handler's own input_fn (preprocess) cannot be keyed, so its images are always made.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        folder: Path | None = None,
        preprocess: Preprocess | None = None,
        cache_root: Path | None = None,
    ) -> None:
        self.input_shape = tuple(input_shape)
        self.folder = folder
        self.preprocess = preprocess
        self.cache_root = cache_root

    def images(self) -> list[np.ndarray]:
        return calibration_images(self.input_shape, folder=self.folder, preprocess=self.preprocess)  # type: ignore[arg-type]

    def digest(self) -> str:
        path = self._digest_path()
        if path is not None and path.is_file():
            return path.read_text().strip()
        digest = calibration_digest(self.images())
        if path is not None:
            tmp = path.with_name(f".{os.getpid()}.{path.name}")
            tmp.write_text(digest)
            os.replace(tmp, path)
        return digest

    def _digest_path(self) -> Path | None:
        if self.preprocess is not None:
            return None
        options = {
            "count": DEFAULT_CALIBRATION_COUNT,
            "seed": CALIBRATION_SEED,
            "input_shape": list(self.input_shape),
            "pillow": Image.__version__,  # resizing and augmenting are Pillow's
            "sources": _sources_stat(calibration_source_paths(self.folder)),
        }
        folder = variant_cache_dir(
            "calibration", "photos", "calibration-digest", options, self.cache_root or default_cache_root()
        )
        return folder / "digest.txt"
