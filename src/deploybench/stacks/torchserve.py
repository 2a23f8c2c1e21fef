"""TorchServe (the server inside SageMaker's PyTorch container): a .mar from the variant, config.properties.

Knobs use the SageMaker PyTorch container's environment names, so the seed's container is reproducible:
SAGEMAKER_MODEL_SERVER_WORKERS -> default_workers_per_model and the model's min/max workers;
SAGEMAKER_TS_BATCH_SIZE -> batchSize; SAGEMAKER_TS_MAX_BATCH_DELAY -> maxBatchDelay (integer ms, rounded
up, at least 1: TorchServe reads 0 as its 100 ms default); OMP_NUM_THREADS per worker (TorchServe sets
none). The trial's folder keeps config.properties (`torchserve --start --ts-config config.properties`
reproduces the trial) and sagemaker.env (for `docker run --env-file` with the real container).

The JVM is started directly with the command `torchserve --start --foreground` builds: that launcher
keeps one pid file per machine (two TorchServes could not run side by side) and does not pass SIGTERM
on to Java. Every port (inference, management, metrics, two gRPC) is bound to 127.0.0.1; token auth
is off for the loopback test; the model API stays off.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from deploybench.backends.base import Availability, library_importable
from deploybench.cache import default_cache_root
from deploybench.results import Candidate
from deploybench.stacks.artifacts import ModelArtifact, model_artifact
from deploybench.stacks.base import (
    CANONICAL_KNOBS,
    Endpoint,
    Stack,
    StackLaunch,
    StackServer,
    http_get,
    loopback_url,
    register,
    thread_env,
)
from deploybench.stacks.process import ServerStartError, log_tail
from deploybench.stacks.torchserve_handler import META_FILE

MODEL_NAME = "model"
INSTALL = (
    "install with pip install torchserve==0.12.0 torch-model-archiver==0.12.0 (deploybench[stacks]) "
    "and a Java 17 runtime: apt-get install openjdk-17-jre-headless"
)
HANDLER = Path(__file__).with_name("torchserve_handler.py")
JOB_QUEUE_SIZE = 100  # TorchServe's default, written out: it bounds the requests waiting per model
ARCHIVE_TIMEOUT_S = 300
WORKER_DIED = "Backend worker process died"


@cache
def java_major() -> int | None:
    """The major version of `java -version` (JAVA_HOME first, as TorchServe's launcher); None if absent."""
    java = java_binary()
    if java is None:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def java_binary() -> str | None:
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else shutil.which("java")


def delay_ms(candidate: Candidate) -> int:
    """Whole ms, rounded up, at least 1: TorchServe reads maxBatchDelay 0 as unset (its 100 ms default).

    At batch size 1 the delay never applies (a batch of one is full at once).
    """
    return max(1, math.ceil(candidate.max_delay_ms))


def config_properties(settings: dict[str, Any], ports: dict[str, int], store: Path) -> str:
    """config.properties as the SageMaker PyTorch container writes it from its environment, on loopback."""
    workers = int(settings["SAGEMAKER_MODEL_SERVER_WORKERS"])
    model = {
        "defaultVersion": True,
        "marName": f"{MODEL_NAME}.mar",
        "minWorkers": workers,
        "maxWorkers": workers,
        "batchSize": int(settings["SAGEMAKER_TS_BATCH_SIZE"]),
        "maxBatchDelay": int(settings["SAGEMAKER_TS_MAX_BATCH_DELAY"]),
        "responseTimeout": 120,
    }
    cores = os.cpu_count() or 1
    lines = {
        "inference_address": loopback_url(ports["inference"]),
        "management_address": loopback_url(ports["management"]),
        "metrics_address": loopback_url(ports["metrics"]),
        "grpc_inference_address": "127.0.0.1",
        "grpc_inference_port": ports["grpc_inference"],
        "grpc_management_address": "127.0.0.1",
        "grpc_management_port": ports["grpc_management"],
        "model_store": str(store),
        "load_models": f"{MODEL_NAME}.mar",
        "models": json.dumps({MODEL_NAME: {"1.0": model}}, separators=(",", ":")),
        "default_workers_per_model": workers,
        "job_queue_size": JOB_QUEUE_SIZE,
        "number_of_netty_threads": cores,  # TorchServe's default (logical cores), written out
        "netty_client_threads": cores,
        "disable_token_authorization": "true",
        "enable_model_api": "false",
        "install_py_dep_per_model": "false",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def _archive_key(artifact: ModelArtifact) -> str:
    stat = artifact.path.stat()
    parts = [
        str(artifact.path.resolve()),
        str(stat.st_size),
        str(stat.st_mtime_ns),
        hashlib.sha256(HANDLER.read_bytes()).hexdigest(),
        metadata.version("torch-model-archiver"),
        json.dumps(artifact.labels),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def build_mar(artifact: ModelArtifact, cache_root: Path, on_message: Any) -> Path:
    """torch-model-archiver on the variant's file + our handler; cached by the exact inputs."""
    target = cache_root / "stacks" / "torchserve" / _archive_key(artifact) / f"{MODEL_NAME}.mar"
    if target.exists():
        return target
    on_message(f"torchserve: archiving {artifact.path.name} ({artifact.kind}) into a .mar")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        meta = Path(scratch) / META_FILE
        meta.write_text(
            json.dumps({"labels": artifact.labels, "input_shape": list(artifact.input_shape), "top_k": 5})
        )
        subprocess.run(
            [sys.executable, "-m", "model_archiver.model_packaging", "--model-name", MODEL_NAME,
             "--version", "1.0", "--serialized-file", str(artifact.path), "--handler", str(HANDLER),
             "--extra-files", str(meta), "--export-path", scratch, "--force"],
            check=True, capture_output=True, timeout=ARCHIVE_TIMEOUT_S,
        )  # fmt: skip
        os.replace(Path(scratch) / f"{MODEL_NAME}.mar", target)
    return target


def _fail_on_dying_workers(server: StackServer) -> None:
    """TorchServe restarts a worker that cannot load the model forever; two deaths each is a failed start."""
    deaths = server.new_log().count(WORKER_DIED)
    if deaths >= 2 * int(server.settings["SAGEMAKER_MODEL_SERVER_WORKERS"]):
        message = f"torchserve: model workers died {deaths} times loading the model"
        raise ServerStartError(message, log_tail(server.process.log_path, 60))


@register
class TorchServeStack(Stack):
    name = "torchserve"
    protocol = "torchserve-http"
    knobs = CANONICAL_KNOBS
    delay_step_ms = 1.0  # SAGEMAKER_TS_MAX_BATCH_DELAY: whole ms
    description = "TorchServe 0.12 (SageMaker PyTorch container's server): POST /predictions/model"
    install_hint = INSTALL
    backends = frozenset({"eager", "torchscript", "onnxruntime", "onnxruntime-int8"})
    port_names = ("inference", "management", "metrics", "grpc_inference", "grpc_management")

    def availability(self) -> Availability:
        missing = [name for name in ("ts", "model_archiver") if not library_importable(name)]
        if missing:
            return Availability(False, f"unavailable: {', '.join(missing)} not installed ({INSTALL})")
        major = java_major()
        if major is None:
            return Availability(False, f"unavailable: no Java runtime found ({INSTALL})")
        if major < 17:
            return Availability(
                False, f"unavailable: Java {major} found, TorchServe 0.12 needs 17 ({INSTALL})"
            )
        return Availability(True)

    def settings(self, candidate: Candidate) -> dict[str, Any]:
        return {
            "SAGEMAKER_MODEL_SERVER_WORKERS": candidate.workers,
            "SAGEMAKER_TS_BATCH_SIZE": candidate.max_batch_size,
            "SAGEMAKER_TS_MAX_BATCH_DELAY": delay_ms(candidate),
            "OMP_NUM_THREADS": candidate.threads,
        }

    def prepare(self, launch: StackLaunch) -> dict[str, Any]:
        artifact = model_artifact(launch.model, launch.candidate.backend, launch.cache_dir)
        mar = build_mar(artifact, launch.cache_dir or default_cache_root(), launch.on_message)
        store = launch.workdir / "model-store"
        store.mkdir(exist_ok=True)
        linked = store / mar.name
        linked.unlink(missing_ok=True)
        linked.symlink_to(mar)
        env_lines = [f"{k}={v}" for k, v in self.settings(launch.candidate).items()]
        (launch.workdir / "sagemaker.env").write_text("\n".join(env_lines) + "\n")
        return {"store": store}

    def command(
        self, launch: StackLaunch, ports: dict[str, int], prepared: dict[str, Any]
    ) -> tuple[list[str], dict[str, str]]:
        import ts

        config = launch.workdir / "config.properties"
        config.write_text(config_properties(self.settings(launch.candidate), ports, prepared["store"]))
        scratch = launch.workdir / "tmp"  # the workers' Unix sockets and unpacked models
        scratch.mkdir(exist_ok=True)
        home = Path(ts.__file__).resolve().parent.parent
        command = [
            java_binary() or "java", f"-Dmodel_server_home={home}", f"-Djava.io.tmpdir={scratch}",
            "-cp", f".:{home / 'ts' / 'frontend' / '*'}", "org.pytorch.serve.ModelServer",
            "--python", sys.executable, "-f", str(config), "-s", str(prepared["store"]),
            "-ncs", "--disable-token-auth",
        ]  # fmt: skip
        env = {**thread_env(launch.candidate.threads), "LOG_LOCATION": str(launch.workdir / "logs"),
               "METRICS_LOCATION": str(launch.workdir / "logs"), "TEMP": str(scratch)}  # fmt: skip
        return command, env

    def cleanup(self, server: StackServer) -> None:
        shutil.rmtree(server.workdir / "tmp", ignore_errors=True)  # the unpacked .mar, one per worker start

    def endpoint(self, ports: dict[str, int]) -> Endpoint:
        url = loopback_url(ports["inference"], f"/predictions/{MODEL_NAME}")
        return Endpoint(url, self.protocol, self.content_type, MODEL_NAME)

    def _describe(self, server: StackServer) -> dict[str, Any]:
        status, body = http_get(loopback_url(server.ports["management"], f"/models/{MODEL_NAME}"))
        if status != 200:
            raise ValueError(f"management API answered {status}")
        return dict(json.loads(body)[0])

    def is_ready(self, server: StackServer) -> bool:
        _fail_on_dying_workers(server)
        if http_get(loopback_url(server.ports["inference"], "/ping"), timeout_s=2)[0] != 200:
            return False
        workers = self._describe(server).get("workers", [])
        ready = [w for w in workers if w.get("status") == "READY"]
        return len(ready) >= int(server.settings["SAGEMAKER_MODEL_SERVER_WORKERS"])

    def reported(self, server: StackServer) -> dict[str, Any]:
        """The management API's view: worker count and states, the batch settings it applied."""
        model = self._describe(server)
        keys = ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout")
        workers = model.get("workers", [])
        return {
            **{key: model.get(key) for key in keys},
            "workers": len(workers),
            "worker_states": sorted(w.get("status", "?") for w in workers),
            "job_queue_remaining": model.get("jobQueueStatus", {}).get("remainingCapacity"),
        }
