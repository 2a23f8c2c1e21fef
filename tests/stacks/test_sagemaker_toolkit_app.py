"""The SageMaker PyTorch toolkit, run here as its container runs it: only its paths move."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from deploybench.stacks import sagemaker_toolkit_app as app


def test_the_toolkit_finds_its_files_where_setuptools_has_no_pkg_resources(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pkg_resources", None)  # `import pkg_resources` raises, as on 81+
    app.provide_pkg_resources()
    shim = sys.modules["pkg_resources"]
    assert shim is not None
    path = Path(shim.resource_filename(app.TOOLKIT, "/etc/default-ts.properties"))
    assert path.is_file() and path.parent.name == "etc"  # a leading '/' stays inside the package
    assert "enable_envvars_config=true" in path.read_text()


def test_the_archive_is_staged_as_opt_ml_model_without_copying(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    base = app.stage(tmp_path)
    try:
        assert (base / "model").resolve() == tmp_path.resolve()
        assert (base / "model" / "code").is_dir()
    finally:
        (base / "model").unlink()
        base.rmdir()
