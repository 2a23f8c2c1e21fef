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
