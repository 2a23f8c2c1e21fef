"""Holes in the parity gate, each closed: every test here passed wrongly (or failed) on the old gate.

A variant that ignores its input, one that is wrong only at some batch sizes, one whose logits are
scaled, a few-class classifier with top-1 ungated, and parity inputs that were calibration images.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from helpers import TINY

from deploybench.backends.base import _REGISTRY, Availability, Backend, BuildContext, Variant, register
from deploybench.backends.eager import TorchModuleVariant
from deploybench.config import ModelSpec, ParityThresholds
from deploybench.inputs.calibration import calibration_images, parity_inputs
from deploybench.models.loaded import LoadedModel
from deploybench.variants.parity import check_parity, compare_logits
from deploybench.variants.verify import evaluate_variants


class _IgnoresInput(Variant):
    """Returns the same logits for every image, or repeats the first row of each batch."""

    def __init__(self, inner: Variant, mode: str, precision: str) -> None:
        self.inner, self.mode = inner, mode
        self.backend, self.precision, self.versions = f"ignores-input-{mode}", precision, {}
        self.constant: np.ndarray | None = None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        out = self.inner.predict(batch)
        if self.mode == "first-row":
            return np.repeat(out[:1], len(out), axis=0)
        if self.constant is None:
            self.constant = out[:1].copy()
        return np.repeat(self.constant, len(out), axis=0)


@pytest.fixture(scope="module")
def random_resnet18() -> tuple[Variant, np.ndarray, np.ndarray]:
    """A random-init ResNet-18 with untouched BatchNorm statistics: it predicts one class for everything."""
    torch.manual_seed(0)
    torch.set_num_threads(2)
    module = torchvision.models.resnet18(weights=None).eval()
    eager = TorchModuleVariant("eager", "fp32", module, 0.0)
    inputs = parity_inputs(count=16)
    return eager, inputs, eager.predict(inputs)


@pytest.mark.parametrize("mode", ["constant", "first-row"])
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_a_variant_that_ignores_its_input_fails_on_random_weights(
    random_resnet18: tuple[Variant, np.ndarray, np.ndarray], mode: str, precision: str
) -> None:
    eager, inputs, reference = random_resnet18
    report = check_parity(_IgnoresInput(eager, mode, precision), inputs, reference)
    assert report.verdict == "rejected", (report.cosine_p10, report.notes)


def test_parity_inputs_are_never_calibration_images() -> None:
    calibration = np.stack(calibration_images(count=100))
    parity = parity_inputs(count=32)
    flat_calibration = {image.tobytes() for image in calibration}
    assert not [i for i, image in enumerate(parity) if image.tobytes() in flat_calibration]
    # nor near-copies (another crop of the same photo): no parity input correlates like a duplicate
    a = calibration.reshape(len(calibration), -1)
    b = parity.reshape(len(parity), -1)
    a = (a - a.mean(1, keepdims=True)) / a.std(1, keepdims=True)
    b = (b - b.mean(1, keepdims=True)) / b.std(1, keepdims=True)
    assert float((b @ a.T / a.shape[1]).max()) < 0.95


def _few_class_case() -> tuple[np.ndarray, np.ndarray]:
    """10 classes, class 0 wins for half the inputs; the variant flips the other half's top-1 answers,
    close calls (margin 0.05), so its logits stay close (high cosine) while its answers do not."""
    rng = np.random.default_rng(3)
    reference = rng.normal(0, 1, (40, 10)).astype(np.float32)
    reference[:20, 0] += 4.0
    rows = np.arange(20, 40)
    order = np.argsort(-reference[rows], axis=1)
    first, second = order[:, 0], order[:, 1]
    reference[rows, second] = reference[rows, first] - 0.05
    output = reference.copy()
    output[rows, first], output[rows, second] = reference[rows, second], reference[rows, first]
    return reference, output


def test_few_class_classifiers_have_their_top1_gated() -> None:
    reference, output = _few_class_case()
    assert (reference.argmax(1) == output.argmax(1)).mean() == pytest.approx(0.5)
    report = compare_logits(reference, output, "int8", ParityThresholds())
    assert report.verdict == "rejected" and "top-1" in (report.reason or "")
    binary = reference[:, :2]
    flipped = binary[:, ::-1].copy()
    assert compare_logits(binary, flipped, "int8", ParityThresholds()).verdict == "rejected"


@pytest.mark.parametrize(("precision", "scale"), [("fp32", 1.05), ("bf16", 1.5), ("int8", 2.0)])
def test_scaled_logits_are_rejected_though_their_cosine_is_perfect(
    effnet_reference: np.ndarray, precision: str, scale: float
) -> None:
    report = compare_logits(effnet_reference, effnet_reference * scale, precision, ParityThresholds())
    assert report.verdict == "rejected" and "err" in (report.reason or "")


class _WrongAtOddBatches(Variant):
    """Correct at batch sizes 1, 2, 4, 8; rows shuffled at any odd size above 1 (a bad kernel path)."""

    def __init__(self, inner: Variant) -> None:
        self.inner, self.backend, self.precision, self.versions = inner, "odd-batches", "fp32", {}

    def predict(self, batch: np.ndarray) -> np.ndarray:
        out = self.inner.predict(batch)
        return np.roll(out, 1, axis=0) if len(out) % 2 and len(out) > 1 else out


class _OddBatchBackend(Backend):
    name = "test-odd-batches"
    precision = "fp32"

    def availability(self) -> Availability:
        return Availability(True)

    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        return _WrongAtOddBatches(TorchModuleVariant("eager", "fp32", model.module, 0.0))


@pytest.fixture
def odd_batch_backend() -> Iterator[None]:
    register(_OddBatchBackend)
    yield
    _REGISTRY.pop(_OddBatchBackend.name)


def test_parity_covers_every_batch_size_up_to_the_largest(odd_batch_backend: None, tmp_path: Path) -> None:
    report = evaluate_variants(
        ModelSpec(source=TINY),
        ["test-odd-batches"],
        batch_sizes=(1, 8),
        time_budget_s=0.5,
        cache_dir=tmp_path,
    )
    parity = report.variants[1].parity
    assert parity is not None and parity.verdict == "rejected"
    assert "batch size 3" in (parity.reason or "")


def test_batches_larger_than_the_parity_set_are_verified_too(tiny: LoadedModel) -> None:
    class WrongAbove8(Variant):
        backend, precision, versions = "big-batches", "fp32", {}

        def predict(self, batch: np.ndarray) -> np.ndarray:
            out = TorchModuleVariant("eager", "fp32", tiny.module, 0.0).predict(batch)
            return out[::-1].copy() if len(out) > 8 else out

    inputs = parity_inputs(count=8)
    reference = TorchModuleVariant("eager", "fp32", tiny.module, 0.0).predict(inputs)
    report = check_parity(WrongAbove8(), inputs, reference, batch_sizes=range(1, 13))
    assert report.verdict == "rejected" and report.batch_sizes == list(range(1, 13))
    assert "batch size 9, 10, 11, 12" in (report.reason or "")
