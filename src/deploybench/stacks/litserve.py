"""LitServe: any deploybench variant inside a LitAPI (litserve_app.py), JSON with a base64 image.

Knobs: workers -> workers_per_device (accelerator cpu, one device); threads -> the variant's intra-op
threads; max_batch_size -> LitAPI max_batch_size; max_delay_ms -> batch_timeout (seconds, / 1000).
Bound to 127.0.0.1; no client-file generation.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from deploybench.backends.base import Availability, library_importable
from deploybench.load.targets import HttpTarget, Target
from deploybench.results import Candidate
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

INSTALL = "install with pip install litserve==0.2.19 (deploybench[stacks])"


def json_image(payload: bytes) -> bytes:
    """LitServe's request body for one image."""
    return json.dumps({"image": base64.b64encode(payload).decode("ascii")}).encode()


@register
class LitServeStack(Stack):
    name = "litserve"
    protocol = "litserve-json-base64"
    knobs = CANONICAL_KNOBS  # batch_timeout in (float) seconds: any delay
    description = "LitServe 0.2: POST /predict {'image': base64}, any deploybench backend"
    install_hint = INSTALL
    content_type = "application/json"

    def availability(self) -> Availability:
        if not library_importable("litserve"):
            return Availability(False, f"unavailable: litserve not installed ({INSTALL})")
        return Availability(True)

    def settings(self, candidate: Candidate) -> dict[str, Any]:
        return {
            "workers_per_device": candidate.workers,
            "threads": candidate.threads,
            "max_batch_size": candidate.max_batch_size,
            "batch_timeout": candidate.max_delay_ms / 1000.0 if candidate.max_batch_size > 1 else 0.0,
        }

    def command(
        self, launch: StackLaunch, ports: dict[str, int], prepared: dict[str, Any]
    ) -> tuple[list[str], dict[str, str]]:
        knobs = self.settings(launch.candidate)
        command = [
            sys.executable, "-m", "deploybench.stacks.litserve_app",
            "--model-json", launch.model.model_dump_json(), "--backend", launch.candidate.backend,
            "--port", str(ports["http"]), "--workers-per-device", str(knobs["workers_per_device"]),
            "--threads", str(knobs["threads"]), "--max-batch-size", str(knobs["max_batch_size"]),
            "--batch-timeout", f"{knobs['batch_timeout']:g}",
        ]  # fmt: skip
        if launch.cache_dir is not None:
            command += ["--cache-dir", str(launch.cache_dir)]
        return command, thread_env(launch.candidate.threads)

    def endpoint(self, ports: dict[str, int]) -> Endpoint:
        return Endpoint(loopback_url(ports["http"], "/predict"), self.protocol, self.content_type)

    def is_ready(self, server: StackServer) -> bool:
        return http_get(loopback_url(server.ports["http"], "/health"), timeout_s=2)[0] == 200

    def target(self, server: StackServer, payloads: list[bytes], content_type: str) -> Target:
        return HttpTarget(server.endpoint.url, [json_image(p) for p in payloads], self.content_type)

    def request(self, server: StackServer, payload: bytes) -> tuple[bytes, dict[str, str]]:
        return json_image(payload), {"Content-Type": self.content_type}
