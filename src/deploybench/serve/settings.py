"""Resolved settings of one `deploybench serve` run: CLI flags win over SageMaker env vars, then defaults.

Resolving also reads the model folder the way SageMaker does and refuses what it cannot serve
unambiguously: a SAGEMAKER_PROGRAM that is not in code/, a code/ without the handler, a folder
whose model file deploybench must pick but finds none or several of.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from deploybench.config import ModelSpec, ServerConfig, StrictModel
from deploybench.sagemaker.codecs import JSON, OUTPUT_TYPES
from deploybench.sagemaker.contract import DEFAULT_PROGRAM, HandlerContractError, program_name

MODEL_FILE_SUFFIXES = (".onnx", ".pt", ".pth", ".ts")

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
    model: ModelSpec | None = Field(
        default_factory=ModelSpec, description="what deploybench builds; None: the user's handler loads it"
    )
    model_dir: Path | None = Field(None, description="unpacked SageMaker model folder (model files, code/)")
    program: str = Field(DEFAULT_PROGRAM, description="user handler file inside model_dir/code")
    default_accept: str = Field(JSON, description="Accept for requests without one or with */*")
    extra_paths: list[Path] = Field(
        default_factory=list, description="appended to workers' sys.path (code/requirements.txt installed)"
    )
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


def _check_program(model_dir: Path, program: str, explicit: bool) -> None:
    code = model_dir / "code"
    if (code / program).is_file():
        return
    if explicit:
        raise SettingsError(f"SAGEMAKER_PROGRAM={program}: there is no code/{program} in the model folder")
    scripts = sorted(p.name for p in code.glob("*.py")) if code.is_dir() else []
    if scripts:
        raise SettingsError(
            f"code/ holds {', '.join(scripts)} but no {program}: set SAGEMAKER_PROGRAM to the handler file"
        )


def model_file(model_dir: Path) -> Path:
    """The one model file at the folder's root, for the built-in handler; none or several is an error."""
    found = sorted(p for p in model_dir.iterdir() if p.is_file() and p.suffix.lower() in MODEL_FILE_SUFFIXES)
    if len(found) == 1:
        return found[0]
    names = ", ".join(p.name for p in found) or f"no {'/'.join(MODEL_FILE_SUFFIXES)} file"
    raise SettingsError(
        f"the model folder holds {names} at its root: keep exactly one, name it with --model, "
        "or add code/inference.py with a model_fn"
    )


def resolve_settings(
    server_flags: Mapping[str, Any],
    model: ModelSpec | None,
    *,
    model_dir: Path | None = None,
    cache_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    weights: str = "auto",
) -> ServeSettings:
    """Merge: defaults < SageMaker env vars < CLI flags (flags given as None are not set).

    `model` None means "not named": the built-in handler then serves the folder's one model file
    (or the default ResNet50 without a folder), a user handler its model_fn or the toolkit default."""
    env = os.environ if env is None else env
    values = _parse_env(env)
    values.update({key: value for key, value in server_flags.items() if value is not None})
    try:
        server = ServerConfig(**values)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    try:
        program, explicit = program_name(env)
    except HandlerContractError as exc:
        raise SettingsError(str(exc)) from exc
    has_handler = False
    if model_dir is not None:
        _check_program(model_dir, program, explicit)
        has_handler = (model_dir / "code" / program).is_file()
    if model is None and not has_handler:
        model = (
            ModelSpec(source=str(model_file(model_dir)), weights=weights)
            if model_dir
            else ModelSpec(weights=weights)
        )
    if has_handler and server.runtime.decoder != "pillow":
        raise SettingsError(
            f"--decoder {server.runtime.decoder}: the decoder is the built-in image pipeline's; your "
            f"code/{program} reads its own requests (input_fn), so serve it with --decoder pillow"
        )
    default_accept = env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "").strip() or JSON
    if not has_handler and default_accept not in OUTPUT_TYPES:
        raise SettingsError(
            f"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT={default_accept}: the built-in handler answers "
            f"{' or '.join(OUTPUT_TYPES)}"
        )
    return ServeSettings(
        server=server,
        model=model,
        model_dir=model_dir,
        program=program,
        default_accept=default_accept,
        cache_dir=cache_dir,
    )
