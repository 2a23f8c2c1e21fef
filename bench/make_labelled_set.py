"""Regenerate src/deploybench/data/labelled (the bundled labelled set); see data/PROVENANCE.md.

Five CC0 / public-domain / CC BY photos already on disk in installed packages, each a clear example
of one ImageNet class, 16 images per class: the photo itself, then 15 random crops / flips / colour
jitters (the same augment() as calibration, another seed). Short side 256, JPEG quality 85. Only
parity photos are used, never calibration photos (backends/calibration.py), so evaluation images
are never calibration images.

    .venv/bin/python bench/make_labelled_set.py
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from deploybench.inputs.calibration import CALIBRATION_PHOTOS, augment
from deploybench.inputs.labelled import bundled_labelled_dir

PER_CLASS = 16
SEED = 11
SHORT_SIDE = 256
# (package, file in its data folder, WordNet id, ImageNet class): all reviewed by eye.
PHOTOS = (
    ("skimage", "data/chelsea.png", "n02123045", "tabby"),
    ("skimage", "data/coffee.png", "n07920052", "espresso"),
    ("skimage", "data/camera.png", "n04485082", "tripod"),
    ("skimage", "data/rocket.jpg", "n03773504", "missile"),
    ("sklearn", "datasets/images/china.jpg", "n03877845", "palace"),
)


def _rescaled(image: Image.Image) -> Image.Image:
    scale = SHORT_SIDE / min(image.size)
    return image.resize(
        (round(image.size[0] * scale), round(image.size[1] * scale)), Image.Resampling.LANCZOS
    )


def main() -> None:
    out = Path("src/deploybench/data/labelled")
    assert out.resolve() == bundled_labelled_dir().resolve(), "run from the repository root"
    shutil.rmtree(out, ignore_errors=True)
    rng = np.random.default_rng(SEED)
    for package, name, wnid, _label in PHOTOS:
        assert Path(name).name not in CALIBRATION_PHOTOS
        photo = Image.open(str(resources.files(package).joinpath(name))).convert("RGB")
        folder = out / wnid
        folder.mkdir(parents=True)
        stem = Path(name).stem
        for index in range(PER_CLASS):
            image = photo if index == 0 else augment(photo, rng)
            _rescaled(image).save(folder / f"{stem}-{index:02d}.jpg", "JPEG", quality=85)
    print(f"wrote {sum(1 for _ in out.rglob('*.jpg'))} images to {out}")


if __name__ == "__main__":
    main()
