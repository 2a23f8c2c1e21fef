"""Labelled evaluation data: an ImageFolder or a `path,label` CSV, validated before any work.

Class names may be a class index (`0`..`999`), the model's own label text (case-insensitive), or,
for ImageNet models, a WordNet id (`n02123045`). Every problem (unknown class, ambiguous label,
empty folder, unreadable image, a file that is also a calibration image) is one error naming the
file, raised before a single variant is built.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from deploybench.inputs.payload import IMAGE_SUFFIXES

WORDNET_ID = re.compile(r"^n\d{8}$")
BUNDLED = "bundled"  # --eval-data bundled: the small labelled set shipped in deploybench/data


class LabelledDataError(ValueError):
    """Evaluation data that cannot be used; the message names the file or folder and the problem."""


@dataclass(frozen=True)
class LabelledSet:
    """Image files and their class indices, with how the classes were named."""

    source: Path
    layout: str  # e.g. "image folder, classes named by WordNet id"
    paths: tuple[Path, ...]
    labels: tuple[int, ...]

    @property
    def classes(self) -> int:
        return len(set(self.labels))

    def describe(self) -> str:
        return f"{len(self.paths)} images, {self.classes} classes, {self.layout}, from {self.source}"


def bundled_labelled_dir() -> Path:
    """The labelled set shipped with deploybench (see data/PROVENANCE.md)."""
    return Path(str(resources.files("deploybench.data").joinpath("labelled")))


def resolve_eval_source(text: str | Path) -> Path:
    """`bundled` names the shipped set; anything else is a folder or CSV path."""
    return bundled_labelled_dir() if str(text) == BUNDLED else Path(text)


@cache
def imagenet_wordnet_ids() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 WordNet ids in class-index order (data/imagenet_wnids.txt)."""
    text = resources.files("deploybench.data").joinpath("imagenet_wnids.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


class _ClassNames:
    """Turns a class name into an index for one model's labels (or none, when it has no names)."""

    def __init__(self, labels: Sequence[str] | None) -> None:
        self.labels = list(labels) if labels else None
        self.by_text: dict[str, list[int]] = {}
        for index, label in enumerate(self.labels or []):
            self.by_text.setdefault(label.strip().lower(), []).append(index)
        imagenet = self.labels is not None and len(self.labels) == 1000
        self.wnids = {w: i for i, w in enumerate(imagenet_wordnet_ids())} if imagenet else {}

    def kind(self, name: str) -> str:
        if name.isdigit():
            return "class index"
        return "WordNet id" if WORDNET_ID.match(name) and self.wnids else "label text"

    def index(self, name: str, where: str) -> int:
        if name.isdigit():
            index = int(name)
            if self.labels is not None and index >= len(self.labels):
                raise LabelledDataError(
                    f"{where}: class index {index} >= the model's {len(self.labels)} classes"
                )
            return index
        if name in self.wnids:
            return self.wnids[name]
        found = self.by_text.get(name.strip().lower(), [])
        if len(found) == 1:
            return found[0]
        if found:
            raise LabelledDataError(
                f"{where}: label {name!r} names several classes ({', '.join(map(str, found))}); use the index"
            )
        if self.labels is None:
            raise LabelledDataError(
                f"{where}: class {name!r}: this model has no label names; use class indices"
            )
        raise LabelledDataError(
            f"{where}: unknown class {name!r}: not a class index, one of the model's labels"
            + (", or an ImageNet WordNet id" if self.wnids else "")
        )


def _check_image(path: Path) -> None:
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise LabelledDataError(f"{path}: unreadable image ({exc})") from None


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _from_folders(root: Path, names: _ClassNames) -> LabelledSet:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise LabelledDataError(f"{root}: no class sub-folders (expected one folder per class, or a CSV)")
    paths: list[Path] = []
    labels: list[int] = []
    for folder in folders:
        index = names.index(folder.name, str(folder))
        images = _images_in(folder)
        if not images:
            raise LabelledDataError(f"{folder}: empty class folder (no {', '.join(IMAGE_SUFFIXES)} files)")
        paths += images
        labels += [index] * len(images)
    kinds = sorted({names.kind(f.name) for f in folders})
    return LabelledSet(
        root, f"image folder, classes named by {' / '.join(kinds)}", tuple(paths), tuple(labels)
    )


def _from_csv(path: Path, names: _ClassNames) -> LabelledSet:
    paths: list[Path] = []
    labels: list[int] = []
    kinds: set[str] = set()
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or (number == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]):
                continue
            if len(row) != 2 or not row[0].strip():
                raise LabelledDataError(f"{path}:{number}: expected `path,label`, got {row!r}")
            image = (path.parent / row[0].strip()).resolve()
            if not image.is_file():
                raise LabelledDataError(f"{path}:{number}: {image}: no such image file")
            labels.append(names.index(row[1].strip(), f"{path}:{number}"))
            kinds.add(names.kind(row[1].strip()))
            paths.append(image)
    if not paths:
        raise LabelledDataError(f"{path}: no `path,label` rows")
    return LabelledSet(
        path, f"CSV, classes named by {' / '.join(sorted(kinds))}", tuple(paths), tuple(labels)
    )


def load_labelled(source: str | Path, labels: Sequence[str] | None) -> LabelledSet:
    """Read and check a labelled set for a model with these label names (None: indices only)."""
    root = resolve_eval_source(source)
    names = _ClassNames(labels)
    if root.is_dir():
        data = _from_folders(root, names)
    elif root.is_file() and root.suffix.lower() == ".csv":
        data = _from_csv(root, names)
    else:
        raise LabelledDataError(f"{root}: evaluation data must be an image folder or a .csv file")
    for image in data.paths:
        _check_image(image)
    return data


def _digests(paths: Iterable[Path]) -> dict[str, Path]:
    return {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in paths}


def check_disjoint(data: LabelledSet, calibration: Iterable[Path]) -> None:
    """Evaluation images must never be calibration images: the same file content is an error."""
    seen = _digests(calibration)
    for path, digest in ((p, hashlib.sha256(p.read_bytes()).hexdigest()) for p in data.paths):
        if digest in seen:
            raise LabelledDataError(
                f"{path}: also a calibration image ({seen[digest]}); evaluation and calibration data must be"
                " disjoint (give --calibration-data another folder)"
            )
