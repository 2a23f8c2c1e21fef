"""Resolved settings of one `deploybench serve` run: CLI flags win over SageMaker env vars, then defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from deploybench.config import ModelSpec, ServerConfig, StrictModel

DEFAULT_PROGRAM = "inference.py"

# SageMaker env var -> ServerConfig field, with the type to parse it as.
_ENV_FIELDS: dict[str, tuple[str, type]] = {
    "SAGEMAKER_MODEL_SERVER_WORKERS": ("workers", int),
    "SAGEMAKER_MODEL_SERVER_TIMEOUT": ("timeout_s", float),
    "SAGEMAKER_MAX_PAYLOAD_IN_MB": ("max_body_mb", float),
    "SAGEMAKER_BIND_TO_PORT": ("port", int),
    # The SageMaker PyTorch container's batching knobs (TorchServe batch_size / max_batch_delay in ms)
    # and the thread count its workers run with: an exported archive's README sets these four.
    "SAGEMAKER_TS_BATCH_SIZE": ("max_batch_size", int),
    "SAGEMAKER_TS_MAX_BATCH_DELAY": ("max_delay_ms", float),
    "OMP_NUM_THREADS": ("threads", int),
}


class SettingsError(ValueError):
    """A flag or environment variable with a value the server cannot use."""


class ServeSettings(StrictModel):
    """Everything a worker and the front need; plain data, sent to spawned workers as a dict."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    model: ModelSpec = Field(default_factory=ModelSpec)
    model_dir: Path | None = Field(None, description="unpacked SageMaker model folder (model files, code/)")
    program: str = Field(DEFAULT_PROGRAM, description="user handler file inside model_dir/code")
    cache_dir: Path | None = None
    top_k: int = Field(5, ge=1, le=1000)

    @property
    def handler_path(self) -> Path | None:
        """The user's inference.py when the model folder has one, else None (built-in handlers)."""
        if self.model_dir is None:
            return None
        path = self.model_dir / "code" / self.program
        return path if path.is_file() else None


def _parse_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for var, (field, kind) in _ENV_FIELDS.items():
        raw = env.get(var, "").strip()
        if not raw:
            continue
        try:
            values[field] = kind(raw)
        except ValueError as exc:
            raise SettingsError(f"{var}={raw!r} is not a valid {kind.__name__}") from exc
    return values


def resolve_settings(
    server_flags: Mapping[str, Any],
    model: ModelSpec,
    *,
    model_dir: Path | None = None,
    cache_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ServeSettings:
    """Merge: defaults < SageMaker env vars < CLI flags (flags given as None are not set)."""
    env = os.environ if env is None else env
    values = _parse_env(env)
    values.update({key: value for key, value in server_flags.items() if value is not None})
    try:
        server = ServerConfig(**values)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    program = env.get("SAGEMAKER_PROGRAM", "").strip() or DEFAULT_PROGRAM
    if Path(program).name != program:
        raise SettingsError(f"SAGEMAKER_PROGRAM={program!r} must be a file name inside code/")
    return ServeSettings(
        server=server, model=model, model_dir=model_dir, program=program, cache_dir=cache_dir
    )
