"""Missing libraries and devices make a backend unavailable with a reason, never an import-time crash."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from deploybench.backends import BackendUnavailableError, BuildContext, available_backends, get_backend
from deploybench.models.loaded import LoadedModel

CUDA = torch.cuda.is_available()


@pytest.mark.parametrize(
    ("blocked", "backends", "hint"),
    [
        ("openvino", ("openvino", "openvino-bf16", "openvino-int8"), "pip install openvino=="),
        ("nncf", ("openvino-int8",), "pip install nncf=="),
        ("onnxruntime", ("onnxruntime", "onnxruntime-int8"), "pip install onnxruntime=="),
    ],
)
def test_missing_library_makes_backend_unavailable(
    monkeypatch: pytest.MonkeyPatch, blocked: str, backends: tuple[str, ...], hint: str
) -> None:
    tiny_ctx = BuildContext(threads=1, example=np.zeros((1, 3, 8, 8), np.float32))
    monkeypatch.setitem(sys.modules, blocked, None)  # Python's own way to make `import blocked` fail
    for name in backends:
        availability = get_backend(name).availability()
        assert not availability.ok
        assert hint in availability.reason
        assert name not in available_backends()
        with pytest.raises(BackendUnavailableError, match=hint):
            get_backend(name).build(None, tiny_ctx)  # type: ignore[arg-type] # refused before the model is used


@pytest.mark.skipif(CUDA, reason="checks the CPU-only answer")
def test_tensorrt_without_cuda_says_so() -> None:
    availability = get_backend("tensorrt").availability()
    assert availability == type(availability)(False, "unavailable: no CUDA device")


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.slow
def test_tensorrt_fp16_on_cuda(
    lite0: LoadedModel, ctx: BuildContext, photos: np.ndarray, reference: np.ndarray
) -> None:
    backend = get_backend("tensorrt")
    if not backend.availability().ok:
        pytest.skip(backend.availability().reason)
    variant = backend.build(lite0, ctx)
    assert variant.device == "cuda" and variant.precision == "fp16"
    outputs = variant.predict(photos)
    assert outputs.shape == reference.shape and outputs.dtype == np.float32
    cos = (outputs * reference).sum(1) / (np.linalg.norm(outputs, axis=1) * np.linalg.norm(reference, axis=1))
    assert cos.min() >= 0.99


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_onnxruntime_uses_cuda_when_present(lite0: LoadedModel, ctx: BuildContext) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime without the CUDA provider (install onnxruntime-gpu)")
    variant = get_backend("onnxruntime").build(lite0, ctx)
    assert variant.device == "cuda"


def test_onnxruntime_spins_by_default_only_where_a_worker_has_a_pool() -> None:
    """1 worker x 2 threads served +19% spinning here; a 1-thread worker has no pool to spin."""
    pytest.importorskip("onnxruntime")
    from deploybench.backends.onnxruntime_backend import SPIN_KEYS, session_options
    from deploybench.config import RuntimeKnobs

    def spins(threads: int, knobs: RuntimeKnobs) -> set[str]:
        options = session_options(threads, knobs)
        return {options.get_session_config_entry(key) for key in SPIN_KEYS}

    assert spins(2, RuntimeKnobs()) == {"1"} and spins(1, RuntimeKnobs()) == {"0"}
    assert spins(2, RuntimeKnobs(spin=False)) == {"0"} and spins(1, RuntimeKnobs(spin=True)) == {"1"}
    assert RuntimeKnobs(spin=False).key_suffix == "nospin" and RuntimeKnobs().key_suffix == ""
