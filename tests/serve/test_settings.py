"""Settings precedence (flags > SageMaker env > defaults), the handler file and the default accept."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploybench.config import ModelSpec
from deploybench.serve.settings import SettingsError, resolve_settings

ENV = {
    "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
    "SAGEMAKER_MODEL_SERVER_TIMEOUT": "12",
    "SAGEMAKER_MAX_PAYLOAD_IN_MB": "2",
    "SAGEMAKER_BIND_TO_PORT": "9090",
    "SAGEMAKER_PROGRAM": "serve_me.py",
}


def test_env_applies_and_flags_win() -> None:
    settings = resolve_settings({"workers": 5, "port": None}, ModelSpec(), env=ENV)
    server = settings.server
    assert (server.workers, server.timeout_s, server.max_body_mb, server.port) == (5, 12.0, 2.0, 9090)
    assert settings.program == "serve_me.py"
    defaults = resolve_settings({}, ModelSpec(), env={}).server
    assert (defaults.port, defaults.max_body_mb, defaults.host) == (8080, 6.0, "127.0.0.1")


@pytest.mark.parametrize(
    "env",
    [
        {"SAGEMAKER_MODEL_SERVER_WORKERS": "many"},
        {"SAGEMAKER_PROGRAM": "../x.py"},
        {"SAGEMAKER_BIND_TO_PORT": "-1"},
    ],
)
def test_bad_environment_is_a_clear_error(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        resolve_settings({}, ModelSpec(), env=env)


def test_defaults_bound_the_queue_and_the_restarts() -> None:
    server = resolve_settings({}, ModelSpec(), env={}).server
    assert (server.max_queue_size, server.max_worker_restarts) == (100, 5)


def test_handler_path_only_when_the_program_exists(tmp_path: Path) -> None:
    settings = resolve_settings({}, ModelSpec(), model_dir=tmp_path, env={})
    assert settings.handler_path is None
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text("")
    assert settings.handler_path == tmp_path / "code" / "inference.py"


@pytest.mark.parametrize("program", ["serve_me", "serve_me.py"])
def test_sagemaker_program_with_or_without_py(tmp_path: Path, program: str) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "serve_me.py").write_text("")
    settings = resolve_settings({}, None, model_dir=tmp_path, env={"SAGEMAKER_PROGRAM": program})
    assert settings.handler_path == tmp_path / "code" / "serve_me.py"
    assert settings.model is None  # the handler loads the model (model_fn or the toolkit default)


def test_a_missing_program_is_an_error_not_the_builtin_handler(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(SettingsError, match=r"no code/serve_me\.py"):
        resolve_settings({}, None, model_dir=tmp_path, env={"SAGEMAKER_PROGRAM": "serve_me.py"})
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "handler.py").write_text("")
    with pytest.raises(SettingsError, match=r"holds handler\.py but no inference\.py"):
        resolve_settings({}, None, model_dir=tmp_path, env={})


def test_the_builtin_handler_serves_the_one_model_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"no \.onnx/\.pt/\.pth/\.ts file"):
        resolve_settings({}, None, model_dir=tmp_path, env={})
    (tmp_path / "net.onnx").write_bytes(b"")
    assert resolve_settings({}, None, model_dir=tmp_path, env={}).model.source == str(tmp_path / "net.onnx")
    (tmp_path / "net.pt").write_bytes(b"")
    with pytest.raises(SettingsError, match=r"net\.onnx, net\.pt"):
        resolve_settings({}, None, model_dir=tmp_path, env={})
    named = resolve_settings({}, ModelSpec(source="x.onnx"), model_dir=tmp_path, env={})
    assert named.model.source == "x.onnx"


def test_default_invocations_accept(tmp_path: Path) -> None:
    env = {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/x-npy"}
    assert resolve_settings({}, ModelSpec(), env=env).default_accept == "application/x-npy"
    with pytest.raises(SettingsError, match="built-in handler answers"):
        resolve_settings({}, ModelSpec(), env={"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"})
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text("")
    csv = {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}
    assert resolve_settings({}, None, model_dir=tmp_path, env=csv).default_accept == "text/csv"
