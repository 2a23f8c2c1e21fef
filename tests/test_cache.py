"""The artifact cache: keyed directories and the default root."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploybench.cache import default_cache_root, variant_cache_dir


def test_cache_dir_is_keyed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = variant_cache_dir("m", "abc", "openvino", {"x": 1}, tmp_path)
    assert base == variant_cache_dir("m", "abc", "openvino", {"x": 1}, tmp_path)
    others = {
        variant_cache_dir("m", "abd", "openvino", {"x": 1}, tmp_path),
        variant_cache_dir("m", "abc", "onnxruntime", {"x": 1}, tmp_path),
        variant_cache_dir("m", "abc", "openvino", {"x": 2}, tmp_path),
    }
    assert base not in others and len(others) == 3
    assert '"versions"' in (base / "key.json").read_text()
    monkeypatch.setenv("DEPLOYBENCH_CACHE", str(tmp_path / "env"))
    assert default_cache_root() == tmp_path / "env"


def test_an_entry_of_the_same_key_under_another_model_name_is_reused(tmp_path: Path) -> None:
    """A model file that moved (or travelled into a container export) finds what its bytes built."""
    shipped = "/opt/ml/model/inputs/model.pt"
    built = variant_cache_dir("/home/me/model.pt", "abc", "onnxruntime", {"x": 1}, tmp_path)
    assert variant_cache_dir(shipped, "abc", "onnxruntime", {"x": 1}, tmp_path) == built
    other = variant_cache_dir(shipped, "abd", "onnxruntime", {"x": 1}, tmp_path)
    assert other != built and other.parent.name == "opt_ml_model_inputs_model.pt"
