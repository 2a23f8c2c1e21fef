"""Labelled evaluation: the three folder namings and CSV, clear errors, and the paired statistics."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploybench.inputs.calibration import calibration_source_paths
from deploybench.inputs.labelled import (
    LabelledDataError,
    bundled_labelled_dir,
    check_disjoint,
    load_labelled,
)
from deploybench.models.loaded import LoadedModel
from deploybench.models.sources import imagenet_labels, logits_for
from deploybench.variants.accuracy import evaluate_labelled, mcnemar_exact, paired_difference_interval

LABELS = imagenet_labels()
BUNDLED = bundled_labelled_dir()
TABBY, ESPRESSO = 281, 967


def _folder(root: Path, names: dict[str, str]) -> Path:
    """An ImageFolder whose class folders are renamed copies of two bundled classes."""
    for name, wnid in names.items():
        shutil.copytree(BUNDLED / wnid, root / name)
    return root


def test_the_bundled_set_is_an_imagefolder_of_wordnet_ids() -> None:
    data = load_labelled("bundled", LABELS)
    assert data.classes == 5 and len(data.paths) == 80
    assert set(data.labels) == {TABBY, ESPRESSO, 872, 657, 698}
    assert "WordNet id" in data.layout
    check_disjoint(data, calibration_source_paths())  # evaluation images are never calibration images


def test_folders_by_index_or_label_text_and_a_csv(tmp_path: Path) -> None:
    by_index = load_labelled(_folder(tmp_path / "i", {"281": "n02123045", "967": "n07920052"}), LABELS)
    by_text = load_labelled(_folder(tmp_path / "t", {"Tabby": "n02123045", "ESPRESSO": "n07920052"}), LABELS)
    assert sorted(by_index.labels) == sorted(by_text.labels) and set(by_index.labels) == {TABBY, ESPRESSO}
    assert "class index" in by_index.layout and "label text" in by_text.layout
    files = sorted((tmp_path / "i" / "281").iterdir())[:2]
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + f"{files[0]},tabby\n" + f"i/281/{files[1].name},n02123045\n")
    from_csv = load_labelled(csv, LABELS)
    assert from_csv.labels == (TABBY, TABBY) and from_csv.paths[1] == files[1].resolve()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: (root / "not-a-class").mkdir(parents=True), "unknown class 'not-a-class'"),
        (lambda root: (root / "281").mkdir(parents=True), "empty class folder"),
        (lambda root: (root / "1000").mkdir(parents=True), "class index 1000 >= the model's 1000 classes"),
        (lambda root: (root / "Crane Bird").mkdir(parents=True), "empty class folder"),  # label text: found
        (lambda root: root.mkdir(), "no class sub-folders"),
    ],
)
def test_bad_layouts_are_one_clear_error_naming_the_folder(tmp_path: Path, setup, message: str) -> None:
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(LabelledDataError, match=r"data") as error:
        load_labelled(root, LABELS)
    assert message in str(error.value)


def test_unreadable_images_and_calibration_images_are_refused(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"281": "n02123045"})
    (root / "281" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(LabelledDataError, match=r"broken\.jpg: unreadable image"):
        load_labelled(root, LABELS)
    (root / "281" / "broken.jpg").unlink()
    shutil.copy(calibration_source_paths()[0], root / "281" / "copied.png")
    with pytest.raises(LabelledDataError, match=r"copied\.png: also a calibration image"):
        check_disjoint(load_labelled(root, LABELS), calibration_source_paths())
    no_names = tmp_path / "n"
    Image.new("RGB", (8, 8)).save(_folder(no_names, {"tabby": "n02123045"}) / "tabby" / "x.png")
    with pytest.raises(LabelledDataError, match="this model has no label names; use class indices"):
        load_labelled(no_names, None)


def test_mcnemar_is_the_exact_binomial_test_on_the_disagreements() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(10, 0) == pytest.approx(2 * 0.5**10)


def test_the_paired_interval_covers_and_is_never_zero_wide() -> None:
    low, high = paired_difference_interval(25, 0, 0, 5)  # never disagree at n=30
    assert low < -0.05 and high > 0.05  # 30 images cannot rule out a 5 pp difference
    big = 100_000  # large n: close to the Wald interval for paired proportions
    b, c = 3_000, 2_000
    low, high = paired_difference_interval(80_000, b, c, big - 80_000 - b - c)
    half = 1.96 * math.sqrt((b + c) / big - ((b - c) / big) ** 2) / math.sqrt(big)
    assert low == pytest.approx(0.01 - half, abs=5e-4) and high == pytest.approx(0.01 + half, abs=5e-4)
    rng = np.random.default_rng(0)  # coverage of the true difference (0.03) at n=200
    cells = rng.multinomial(200, [0.70, 0.06, 0.03, 0.21], size=400)
    covered = [lo <= 0.03 <= hi for lo, hi in (paired_difference_interval(*map(int, t)) for t in cells)]
    assert 0.92 <= np.mean(covered) <= 0.99


def test_eager_efficientnet_lite0_on_the_bundled_set(effnet: LoadedModel) -> None:
    report = evaluate_labelled(
        lambda batch: logits_for(effnet, batch), load_labelled("bundled", LABELS), (3, 224, 224)
    )
    # measured when written: top-1 57.5% (46/80), top-5 100%: the tabby crops are mostly "Egyptian cat"
    assert report.n == 80 and 0.45 <= report.top1 <= 0.7 and report.top5 >= 0.9
    assert report.drop_pp is None and "the reference" in report.summary
