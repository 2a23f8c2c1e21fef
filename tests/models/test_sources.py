"""Model sources: torchvision, EfficientNet-Lite0, TorchScript, ONNX, entry points, state dicts, bad files."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TESTS, TINY

from deploybench.backends.base import BackendUnavailableError
from deploybench.backends.build import build_variant
from deploybench.config import ModelSpec
from deploybench.inputs.payload import default_payload_path, preprocess
from deploybench.models.loaded import ModelLoadError
from deploybench.models.sources import RANDOM_BN_WEIGHTS, load_model, logits_for


@pytest.fixture(autouse=True)
def _tests_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))


def _cat_batch() -> np.ndarray:
    return preprocess(default_payload_path().read_bytes())[None]


def test_efficientnet_lite0_classifies_the_cat_offline() -> None:
    model = load_model(ModelSpec(source="efficientnet-lite0"))
    assert model.weights == "pretrained" and model.labels is not None
    top1 = model.labels[int(logits_for(model, _cat_batch()).argmax())]
    assert top1 in {"Egyptian cat", "tabby", "tiger cat"}


def test_torchvision_auto_without_cached_weights_is_random(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = load_model(ModelSpec(source="torchvision:mobilenet_v3_small"), tmp_path / "cache")
    assert model.weights == RANDOM_BN_WEIGHTS  # random, BatchNorm statistics re-estimated (and said so)
    assert model.labels is not None and len(model.labels) == 1000
    again = load_model(
        ModelSpec(source="torchvision:mobilenet_v3_small", weights="random"), tmp_path / "cache"
    )
    assert again.fingerprint == model.fingerprint  # seeded: random weights are reproducible


def test_pretrained_download_fails_fast_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    started = time.perf_counter()
    try:
        model = load_model(ModelSpec(source="torchvision:squeezenet1_1", weights="pretrained"))
    except ModelLoadError as exc:
        assert "cannot download pretrained weights" in str(exc) and "--weights random" in str(exc)
        assert time.perf_counter() - started < 60
    else:
        assert model.weights == "pretrained"  # an open network: the download worked


@pytest.mark.parametrize(("source", "size"), [("efficientnet-lite1", 240), ("efficientnet-lite2", 260)])
def test_efficientnet_lite1_and_lite2_load_offline_at_their_own_input_size(source: str, size: int) -> None:
    model = load_model(ModelSpec(source=source))
    assert model.weights == "pretrained" and model.input_shape == (3, size, size)
    image = preprocess(default_payload_path().read_bytes())  # 224 is fine too: the net pools globally
    assert model.labels is not None and model.labels[int(logits_for(model, image[None]).argmax())] in {
        "Egyptian cat",
        "tabby",
        "tiger cat",
    }


def test_entry_point_and_state_dict_file(tmp_path: Path) -> None:
    model = load_model(ModelSpec(source=TINY))
    assert model.weights == f"entry:{TINY}"
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in model.module.state_dict().items()}
    torch.save(state, tmp_path / "weights.pth")
    loaded = load_model(ModelSpec(source=TINY, weights=str(tmp_path / "weights.pth")))
    assert loaded.weights == f"file:{tmp_path / 'weights.pth'}"
    assert loaded.fingerprint != model.fingerprint
    assert torch.equal(loaded.module.state_dict()["8.bias"], state["8.bias"])
    (tmp_path / "moved").mkdir()  # keyed by the weights, not where the file lies (a container ships it)
    moved = (tmp_path / "weights.pth").rename(tmp_path / "moved" / "weights.pth")
    assert load_model(ModelSpec(source=TINY, weights=str(moved))).fingerprint == loaded.fingerprint


def test_torchscript_file_source(tmp_path: Path) -> None:
    reference = load_model(ModelSpec(source=TINY))
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(reference.module), str(path))
    model = load_model(ModelSpec(source=str(path)))
    assert model.weights == f"file:{path}"
    batch = _cat_batch()
    np.testing.assert_allclose(logits_for(model, batch), logits_for(reference, batch), rtol=1e-5, atol=1e-6)
    variant, _ = build_variant(model.spec, "torchscript", threads=1, model=model, cache_dir=tmp_path / "c")
    np.testing.assert_allclose(variant.predict(batch), logits_for(reference, batch), rtol=1e-4, atol=1e-5)


def test_onnx_file_source_runs_the_reference_and_refuses_torch_backends(tmp_path: Path) -> None:
    reference = load_model(ModelSpec(source=TINY))
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(reference.module, (torch.from_numpy(_cat_batch()),), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})  # fmt: skip
    model = load_model(ModelSpec(source=str(path)))
    assert model.onnx_path == path and model.input_shape == (3, 224, 224)
    batch = np.repeat(_cat_batch(), 2, axis=0)
    eager, _ = build_variant(model.spec, "eager", threads=1, model=model, cache_dir=tmp_path / "c")
    np.testing.assert_allclose(eager.predict(batch), logits_for(reference, batch), rtol=1e-4, atol=1e-5)
    with pytest.raises(BackendUnavailableError, match="ONNX file"):
        build_variant(model.spec, "torchscript", threads=1, model=model, cache_dir=tmp_path / "c")


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("model.pt", b"not a zip archive", "not a TorchScript archive"),
        ("model.onnx", b"\x08\x01garbage", "not a loadable ONNX model"),
        ("model.txt", b"hello", "unsupported model source"),
    ],
)
def test_corrupt_or_unsupported_model_file(tmp_path: Path, name: str, content: bytes, problem: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=problem) as info:
        load_model(ModelSpec(source=str(path)))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_files_and_bad_names(tmp_path: Path) -> None:
    cases = [
        (ModelSpec(source=str(tmp_path / "absent.pt")), "TorchScript file not found"),
        (ModelSpec(source=str(tmp_path / "absent.onnx")), "ONNX file not found"),
        (ModelSpec(source=TINY, weights=str(tmp_path / "absent.pth")), "weights file not found"),
        (ModelSpec(source="torchvision:resnet9000"), "resnet9000"),
        (ModelSpec(source="os:getcwd"), "not an nn.Module"),
        (ModelSpec(source="no_such_module_xyz:f"), "no_such_module_xyz"),
    ]
    for spec, problem in cases:
        with pytest.raises(ModelLoadError, match=problem):
            load_model(spec)


def test_corrupt_and_mismatched_state_dicts(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x80\x04garbage")
    with pytest.raises(ModelLoadError, match="not a loadable state dict"):
        load_model(ModelSpec(source=TINY, weights=str(garbage)))
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(ModelLoadError, match="does not fit the model"):
        load_model(ModelSpec(source=TINY, weights=str(wrong)))


def test_a_cached_manifest_loads_a_torchvision_model_without_building_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A server worker loading a cached ONNX/OpenVINO artifact needs the fingerprint, not the network."""
    from deploybench.models import manifest as model_manifest
    from deploybench.models.sources import _torchvision_checkpoint

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec, cache = ModelSpec(source="torchvision:mobilenet_v3_small"), tmp_path / "cache"
    first = load_model(spec, cache)
    second = load_model(spec, cache)
    assert first.built_module is not None and second.built_module is None  # nothing built yet
    described = (second.fingerprint, second.weights, second.labels)
    assert described == (first.fingerprint, first.weights, first.labels)
    np.testing.assert_allclose(logits_for(second, _cat_batch()), logits_for(first, _cat_batch()), rtol=1e-5)

    checkpoint = _torchvision_checkpoint(spec)  # a pretrained file appears: auto would now load it
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"not yet a checkpoint")
    assert model_manifest.lookup(spec, cache) is None
    checkpoint.unlink()

    known = model_manifest.lookup(spec, cache)
    assert known is not None
    known.path.write_text(known.path.read_text().replace(known.fingerprint, "0" * 16))
    stale = load_model(spec, cache)
    with pytest.raises(ModelLoadError, match="not the one its cached manifest names"):
        _ = stale.module
