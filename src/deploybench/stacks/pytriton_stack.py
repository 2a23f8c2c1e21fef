"""Triton Inference Server through PyTriton: the variant's ONNX file inside PyTriton callables, KServe v2.

Knobs: workers -> the model's instance count (one callable, one ONNX Runtime session each); threads ->
intra-op threads per session; max_batch_size -> max_batch_size; max_delay_ms -> the dynamic batcher's
max_queue_delay_microseconds (x 1000). The load generator speaks KServe v2 (POST
/v2/models/model/infer, the image as one BYTES tensor with the binary tensor extension); the statistics
API says which batch sizes Triton formed. PyTriton lives in its own venv (see pytriton_env.py).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import deploybench
from deploybench.backends.base import Availability
from deploybench.load.targets import KServeV2Target, Target, kserve_v2_body
from deploybench.results import Candidate
from deploybench.stacks import pytriton_env
from deploybench.stacks.artifacts import model_artifact
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

MODEL_NAME = "model"
INPUT, OUTPUT, TOP_K = "image", "logits", 5
APP = Path(__file__).with_name("pytriton_app.py")
SOURCE_ROOT = Path(deploybench.__file__).resolve().parent.parent  # inputs.payload, for the callable
INSTALL = (
    "install with: nothing by hand, deploybench creates PyTriton's venv on first use "
    f"({', '.join(pytriton_env.REQUIREMENTS)})"
)


@register
class PyTritonStack(Stack):
    name = "pytriton"
    protocol = "kserve-v2"
    knobs = CANONICAL_KNOBS
    delay_step_ms = 0.001  # max_queue_delay_microseconds
    description = "Triton Inference Server 2.51 via PyTriton 0.7 (CPU): KServe v2 /v2/models/model/infer"
    install_hint = INSTALL
    backends = frozenset({"onnxruntime", "onnxruntime-int8"})
    content_type = "application/octet-stream"

    def availability(self) -> Availability:
        if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
            return Availability(
                False, "unavailable: PyTriton ships tritonserver for Linux x86_64/aarch64 only"
            )
        return Availability(True)

    def settings(self, candidate: Candidate) -> dict[str, Any]:
        batching = candidate.max_batch_size > 1
        return {
            "instance_count": candidate.workers,
            "intra_op_num_threads": candidate.threads,
            "max_batch_size": candidate.max_batch_size,
            "max_queue_delay_microseconds": round(candidate.max_delay_ms * 1000) if batching else 0,
        }

    def prepare(self, launch: StackLaunch) -> dict[str, Any]:
        artifact = model_artifact(launch.model, launch.candidate.backend, launch.cache_dir)
        if artifact.kind != "onnx":
            raise ValueError(f"triton serves ONNX files; {launch.candidate.backend} builds a {artifact.kind}")
        python, stamp = pytriton_env.ensure_venv(launch.on_message)
        shape = ",".join(str(d) for d in artifact.input_shape)
        return {"python": python, "stamp": stamp, "onnx": artifact.path, "shape": shape}

    def command(
        self, launch: StackLaunch, ports: dict[str, int], prepared: dict[str, Any]
    ) -> tuple[list[str], dict[str, str]]:
        knobs = self.settings(launch.candidate)
        command = [
            str(prepared["python"]), str(APP), "--onnx", str(prepared["onnx"]), "--model-name", MODEL_NAME,
            "--http-port", str(ports["http"]),
            "--instances", str(knobs["instance_count"]), "--threads", str(knobs["intra_op_num_threads"]),
            "--max-batch-size", str(knobs["max_batch_size"]),
            "--max-queue-delay-us", str(knobs["max_queue_delay_microseconds"]),
            "--input-shape", prepared["shape"],
        ]  # fmt: skip
        env = {
            **thread_env(launch.candidate.threads),
            "PYTHONPATH": str(SOURCE_ROOT),
            "LD_LIBRARY_PATH": pytriton_env.loader_path(prepared["stamp"]),
        }
        return command, env

    def _base(self, server: StackServer) -> str:
        return loopback_url(server.ports["http"])

    def endpoint(self, ports: dict[str, int]) -> Endpoint:
        url = loopback_url(ports["http"], f"/v2/models/{MODEL_NAME}/infer")
        return Endpoint(url, self.protocol, self.content_type, MODEL_NAME)

    def is_ready(self, server: StackServer) -> bool:
        return http_get(f"{self._base(server)}/v2/models/{MODEL_NAME}/ready", timeout_s=2)[0] == 200

    def target(self, server: StackServer, payloads: list[bytes], content_type: str) -> Target:
        return KServeV2Target(self._base(server), MODEL_NAME, payloads, INPUT, OUTPUT, TOP_K)

    def request(self, server: StackServer, payload: bytes) -> tuple[bytes, dict[str, str]]:
        body, header_bytes = kserve_v2_body(payload, INPUT, OUTPUT, TOP_K)
        return body, {"Content-Type": self.content_type, "Inference-Header-Content-Length": str(header_bytes)}

    def top_classes(self, body: bytes) -> list[int]:
        """Triton's classification answer: BYTES "score:index[:label]", best first."""
        output = next(o for o in json.loads(body)["outputs"] if o["name"] == OUTPUT)
        return [int(str(item).split(":")[1]) for item in output["data"]]

    def reported(self, server: StackServer) -> dict[str, Any]:
        """Model config as Triton applied it, and the batch sizes its dynamic batcher formed (from /stats)."""
        base = f"{self._base(server)}/v2/models/{MODEL_NAME}"
        config = json.loads(http_get(f"{base}/config")[1])
        stats = json.loads(http_get(f"{base}/stats")[1])["model_stats"][0]
        batches = {
            str(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])
        }
        return {
            "instance_count": sum(int(g.get("count", 1)) for g in config.get("instance_group", [])),
            "max_batch_size": config.get("max_batch_size"),
            "max_queue_delay_microseconds": config.get("dynamic_batching", {}).get(
                "max_queue_delay_microseconds"
            ),
            "inference_count": stats.get("inference_count"),
            "execution_count": stats.get("execution_count"),
            "batch_sizes": batches,
        }
