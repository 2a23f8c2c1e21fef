"""Settings precedence (flags > SageMaker env > defaults) and the handler contract checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploybench.config import ModelSpec
from deploybench.serve.handlers import (
    HandlerContext,
    HandlerContractError,
    bind,
    check_contract_source,
    error_status,
)
from deploybench.serve.settings import SettingsError, resolve_settings
from deploybench.serve.vision import HandlerError

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


def test_handler_path_only_when_the_program_exists(tmp_path: Path) -> None:
    settings = resolve_settings({}, ModelSpec(), model_dir=tmp_path, env={})
    assert settings.handler_path is None
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text("")
    assert settings.handler_path == tmp_path / "code" / "inference.py"


def test_transform_fn_with_three_step_functions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "inference.py"
    path.write_text("def transform_fn(m, b, c, a):\n    pass\n\ndef output_fn(p, a):\n    pass\n")
    with pytest.raises(HandlerContractError, match="output_fn"):
        check_contract_source(path)
    path.write_text("def transform_fn(m, b, c, a):\n    pass\n\ndef model_fn(d):\n    pass\n")
    check_contract_source(path)


def test_context_is_passed_only_to_functions_that_take_it() -> None:
    context = HandlerContext("/model", 0, {})
    assert bind(lambda body, ctype: (body, ctype), 2, context)(1, 2) == (1, 2)
    assert bind(lambda body, ctype, ctx: ctx.model_dir, 2, context)(1, 2) == "/model"


def test_error_status_reads_the_exception() -> None:
    assert error_status(HandlerError("x", 415)) == 415
    assert error_status(type("E", (Exception,), {"status": 422})()) == 422
    assert error_status(RuntimeError("x")) == 500
    assert error_status(type("E", (Exception,), {"status_code": 200})()) == 500  # not an error status
