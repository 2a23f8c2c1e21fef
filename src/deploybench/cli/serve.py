"""`deploybench serve`: run the SageMaker-compatible inference server in the foreground."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from deploybench.cache import default_cache_root
from deploybench.cli.app import app, console, fail
from deploybench.config import ModelSpec
from deploybench.sagemaker.archive import ArchiveError, is_archive, safe_extract
from deploybench.sagemaker.contract import HandlerContractError, check_contract_source
from deploybench.sagemaker.requirements import (
    RequirementsError,
    install_requirements,
    requirements_file,
    unmet_requirements,
)
from deploybench.serve.settings import ServeSettings, SettingsError, resolve_settings
from deploybench.stacks.process import run_in_session

EXPORT_MANIFEST = "deploybench-export.json"  # export/package.py's MANIFEST (importing export loads torch)

DEFAULT_SOURCE = "torchvision:resnet50"


@contextmanager
def _model_folder(path: Path | None) -> Iterator[Path | None]:
    """A model folder: the given one, or a model.tar.gz unpacked safely into a temporary one."""
    if path is None or path.is_dir():
        yield path
        return
    if not is_archive(path):
        raise ArchiveError(f"{path}: not a model folder or a .tar.gz/.tgz/.tar archive")
    folder = Path(tempfile.mkdtemp(prefix="deploybench-model-"))
    try:
        yield safe_extract(path, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def is_rayserve_export(folder: Path) -> bool:
    """config.yaml + deployment.py at the root: a `--target sagemaker-rayserve` export (not ours to serve)."""
    return (folder / "config.yaml").is_file() and (folder / "deployment.py").is_file()


def _serve_rayserve_export(folder: Path, port: int | None) -> None:
    """Ray Serve runs the exported application with config.yaml's knobs, on loopback, until SIGTERM."""
    command = [sys.executable, "-m", "deploybench.stacks.rayserve_app", "--exported", str(folder)]
    console.print(f"deploybench serve: Ray Serve runs {folder}/config.yaml's application", soft_wrap=True)
    code = run_in_session([*command, "--port", str(port or 8080)], dict(os.environ))
    if code:
        raise fail(f"Ray Serve exited with code {code}", 1)


def is_sagemaker_pytorch_export(folder: Path) -> bool:
    """deploybench-export.json without another target's files: a `--target sagemaker-pytorch` export."""
    other_target = is_rayserve_export(folder) or is_container_export(folder)
    return (folder / EXPORT_MANIFEST).is_file() and not other_target


def _serve_with_toolkit(folder: Path, port: int | None, install: bool) -> None:
    """TorchServe started by the SageMaker PyTorch toolkit, as the container starts it, with the
    archive's recorded environment (SAGEMAKER_* workers, OMP_NUM_THREADS) where the caller set none."""
    from deploybench.stacks.sagemaker_toolkit_app import toolkit_missing

    missing = toolkit_missing()
    if missing is not None:
        raise fail(f"{missing}; or serve it with deploybench's own server: --server deploybench", 1)
    recorded = json.loads((folder / EXPORT_MANIFEST).read_text()).get("env", {})
    env = {**recorded, **os.environ}
    command = [sys.executable, "-m", "deploybench.stacks.sagemaker_toolkit_app", str(folder)]
    command += ["--port", str(port or 8080)] + (["--install-requirements"] if install else [])
    settings = " ".join(f"{k}={env[k]}" for k in recorded)
    console.print(
        f"deploybench serve: the SageMaker PyTorch toolkit runs TorchServe ({settings})", soft_wrap=True
    )
    code = run_in_session(command, env)
    if code:
        raise fail(f"the SageMaker PyTorch toolkit exited with code {code}", 1)


def is_container_export(folder: Path) -> bool:
    """A `serve` entrypoint, a Dockerfile and deploybench's source at the root: a `--target container`
    export (export/container.py), run by its own entrypoint."""
    return all((folder / name).exists() for name in ("serve", "Dockerfile", "deploybench-src"))


def _serve_container_export(folder: Path, host: str | None, port: int | None) -> None:
    """The container's entrypoint, as `docker run IMAGE serve` runs it, here: port and host by its
    variables, the shipped artifact cache copied into a temporary folder, until SIGTERM."""
    # lazy: the export package loads torch; only a container export needs its entrypoint rules
    from deploybench.export.container import entrypoint

    with tempfile.TemporaryDirectory(prefix="deploybench-container-") as scratch:
        command, env = entrypoint(folder, port or 8080, host or "127.0.0.1", Path(scratch) / "cache")
        console.print(f"deploybench serve: {folder}/serve, the container's entrypoint", soft_wrap=True)
        code = run_in_session(command, {**os.environ, **env})
    if code:
        raise fail(f"the container's entrypoint exited with code {code}", 1)


def _with_requirements(settings: ServeSettings, install: bool) -> ServeSettings:
    """Install code/requirements.txt in isolation when asked; else warn in one line about what is missing."""
    path = requirements_file(settings.model_dir)
    if path is None:
        return settings
    if install:
        target = install_requirements(path, settings.cache_dir or default_cache_root())
        return settings.model_copy(update={"extra_paths": [target]})
    unmet = unmet_requirements(path)
    if unmet:
        console.print(
            f"warning: code/requirements.txt: not installed: {', '.join(unmet)} "
            "(--install-requirements installs them into a folder of their own)",
            soft_wrap=True,
            style="yellow",
            markup=False,
        )
    return settings


def _given(**flags: Any) -> dict[str, Any] | None:
    """The runtime knobs the user gave (the rest keep their defaults), or None for none."""
    given = {name: value for name, value in flags.items() if value is not None}
    return given or None


def _model_spec(
    model: str | None,
    weights: str,
    folder: Path | None,
    model_path: Path | None,
    payload: Path | None,
    content_type: str,
    input_shape: str | None,
) -> ModelSpec | None:
    """--model as given; else, when --payload / --input-shape describe a SageMaker handler's requests,
    the archive itself (its model_fn stays the network); else None (resolve_settings decides)."""
    requests: dict[str, Any] = {"payload": payload, "content_type": content_type}
    if input_shape:
        requests["input_shape"] = parse_shape(input_shape)
    if model:
        return ModelSpec(source=model, weights=weights, **requests)
    has_handler = folder is not None and (folder / "code").is_dir()
    if model_path is not None and has_handler and (payload is not None or input_shape):
        return ModelSpec(source=str(model_path), weights=weights, **requests)
    return None


def parse_shape(text: str) -> tuple[int, int, int]:
    """'3,224,224' -> (3, 224, 224); anything else is a clear error."""
    try:
        dims = tuple(int(part) for part in text.split(","))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise fail(f"--input-shape takes C,H,W (three positive integers), got {text!r}")
    return dims  # type: ignore[return-value]


def _ready_hook(settings: ServeSettings, json_path: Path | None) -> Any:
    def on_ready(info: dict[str, Any]) -> None:
        first = info["workers"][0] if info["workers"] else {}
        console.print(
            f"deploybench serve: ready on {info['url']} "
            f"(handler={first.get('handler')}, model={first.get('model')}, backend={first.get('backend')}, "
            f"precision={first.get('precision')}, weights={first.get('weights')}, "
            f"workers={settings.server.workers}, threads={settings.server.threads}, "
            f"max_batch_size={settings.server.max_batch_size}, "
            f"runtime={settings.server.runtime.key_suffix or 'defaults'}, "
            f"placement={info.get('placement', {}).get('note')})"
            + (f"; your network: {first['network']}" if first.get("network") else ""),
            soft_wrap=True,
        )
        sys.stdout.flush()
        if json_path is not None:
            payload = {**info, "settings": settings.model_dump(mode="json")}
            json_path.write_text(json.dumps(payload, indent=2))

    return on_ready


@app.command()
def serve(
    model_path: Annotated[
        Path | None, typer.Argument(help="SageMaker model.tar.gz or model folder (optional)")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help=f"model source (default: the one model file in the folder, else {DEFAULT_SOURCE})"),
    ] = None,
    weights: Annotated[str, typer.Option(help="auto | pretrained | random | state-dict path")] = "auto",
    backend: Annotated[str, typer.Option(help="variant backend (see `deploybench variants`)")] = "eager",
    workers: Annotated[
        int | None, typer.Option(help="model worker processes [env SAGEMAKER_MODEL_SERVER_WORKERS]")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="intra-op threads per worker [env OMP_NUM_THREADS]")
    ] = None,
    max_batch_size: Annotated[
        int | None,
        typer.Option(help="dynamic batching: most requests per batch [env SAGEMAKER_TS_BATCH_SIZE]"),
    ] = None,
    max_delay_ms: Annotated[
        float | None,
        typer.Option(
            help="dynamic batching: longest wait after the first [env SAGEMAKER_TS_MAX_BATCH_DELAY]"
        ),
    ] = None,
    streams: Annotated[
        int | None, typer.Option(help="inferences in flight at once per worker (OpenVINO NUM_STREAMS)")
    ] = None,
    overlap: Annotated[
        bool | None, typer.Option("--overlap/--no-overlap", help="decode the next batch while one infers")
    ] = None,
    pin: Annotated[
        bool | None, typer.Option("--pin/--no-pin", help="each worker on its own cores (default on)")
    ] = None,
    front: Annotated[
        str | None, typer.Option(help="front process cores: shared (all) | rest (those no worker has)")
    ] = None,
    inter_op_threads: Annotated[
        int | None, typer.Option(help="ONNX Runtime / torch inter-op threads (default 1)")
    ] = None,
    spin: Annotated[
        bool | None,
        typer.Option(
            "--spin/--no-spin",
            help="idle runtime threads spin (default: ONNX Runtime when 2+ threads, never OpenMP)",
        ),
    ] = None,
    thread_pinning: Annotated[
        bool | None,
        typer.Option("--thread-pinning/--no-thread-pinning", help="runtime pins its threads to cores"),
    ] = None,
    decoder: Annotated[
        str | None,
        typer.Option(
            help="who decodes and resizes image bodies: pillow (default) | torchvision | torchvision-cuda"
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8080) [env SAGEMAKER_BIND_TO_PORT]")] = None,
    max_body_mb: Annotated[
        float | None, typer.Option(help="body limit in MiB [env SAGEMAKER_MAX_PAYLOAD_IN_MB]")
    ] = None,
    timeout_s: Annotated[
        float | None,
        typer.Option(help="request timeout, body upload included [env SAGEMAKER_MODEL_SERVER_TIMEOUT]"),
    ] = None,
    max_queue_size: Annotated[
        int | None, typer.Option(help="requests waiting for a worker before 503 + Retry-After (default 100)")
    ] = None,
    max_worker_restarts: Annotated[
        int | None, typer.Option(help="crashes in a row before a worker is left failed (default 5)")
    ] = None,
    server: Annotated[
        str,
        typer.Option(
            help="an exported archive: target (run it as its target does: TorchServe under the SageMaker "
            "PyTorch toolkit, or Ray Serve) | deploybench (this package's own server)"
        ),
    ] = "target",
    install_requirements_flag: Annotated[
        bool,
        typer.Option(
            "--install-requirements", help="pip-install code/requirements.txt into an isolated cache folder"
        ),
    ] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="variant artifact cache")] = None,
    calibration_data: Annotated[
        Path | None, typer.Option(help="folder of images int8 backends calibrate on (as in variants/run)")
    ] = None,
    top_k: Annotated[int, typer.Option(help="labels in a JSON answer")] = 5,
    payload: Annotated[
        Path | None,
        typer.Option(help="sample request bodies your handler reads (with --backend: the stand-in check)"),
    ] = None,
    content_type: Annotated[str, typer.Option(help="Content-Type of the --payload bodies")] = "image/jpeg",
    input_shape: Annotated[
        str | None, typer.Option(help="C,H,W model input when there is no --payload (default 3,224,224)")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="tracebacks in error bodies, access log")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the ready description here")] = None,
) -> None:
    """Serve a model over HTTP with the SageMaker contract (/ping, /invocations) until SIGTERM."""
    # lazy: uvicorn and Starlette load only for `serve`
    from deploybench.serve.app import ServerStartError, run_server

    flags = {
        "backend": backend,
        "workers": workers,
        "threads": threads,
        "max_batch_size": max_batch_size,
        "max_delay_ms": max_delay_ms,
        "runtime": _given(
            streams=streams,
            overlap=overlap,
            pin=pin,
            front=front,
            inter_op_threads=inter_op_threads,
            spin=spin,
            thread_pinning=thread_pinning,
            decoder=decoder,
        ),
        "host": host,
        "port": port,
        "max_body_mb": max_body_mb,
        "timeout_s": timeout_s,
        "max_queue_size": max_queue_size,
        "max_worker_restarts": max_worker_restarts,
        "debug": debug or None,
    }
    try:
        with _model_folder(model_path) as folder:
            if folder is not None and is_rayserve_export(folder):
                return _serve_rayserve_export(folder, port)
            if folder is not None and is_container_export(folder):
                return _serve_container_export(folder, host, port)
            if folder is not None and server == "target" and is_sagemaker_pytorch_export(folder):
                return _serve_with_toolkit(folder, port, install_requirements_flag)
            spec = _model_spec(model, weights, folder, model_path, payload, content_type, input_shape)
            settings = resolve_settings(flags, spec, model_dir=folder, cache_dir=cache_dir, weights=weights)
            if calibration_data is not None and settings.model is not None:
                model_spec = settings.model.model_copy(update={"calibration_data": calibration_data})
                settings = settings.model_copy(update={"model": model_spec})
            settings = _with_requirements(
                settings.model_copy(update={"top_k": top_k}), install_requirements_flag
            )
            if settings.handler_path is not None:
                check_contract_source(settings.handler_path)
            run_server(settings, _ready_hook(settings, json_path))
    except (ArchiveError, SettingsError, HandlerContractError, ValueError) as exc:
        raise fail(str(exc), 2) from None
    except (ServerStartError, RequirementsError) as exc:
        raise fail(str(exc), 1) from None
