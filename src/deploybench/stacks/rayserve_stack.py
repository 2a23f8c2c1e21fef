"""Ray Serve: any deploybench variant in a Serve deployment (rayserve_app.py), the server of AWS's
Ray Serve inference containers (SageMaker: /ping and /invocations in front of the application) and of
KubeRay's RayService.

Knobs: workers -> num_replicas; threads -> num_cpus per replica and the variant's intra-op threads;
max_batch_size -> @serve.batch max_batch_size; max_delay_ms -> batch_wait_timeout_s (seconds, / 1000).
One Ray version, pinned like the executor's (pyproject: the `stacks` extra installs ray[serve]).
A local Ray instance with this machine's cores, bound to 127.0.0.1; the module is rayserve_stack.py,
not ray.py or serve.py, so the app beside it imports the real packages.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from deploybench.backends.base import Availability, library_importable
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
from deploybench.stacks.process import kill_session

INSTALL = 'install with pip install "ray[serve]==2.60.0" (deploybench[stacks])'
# max_ongoing_requests per replica: with Ray's default (5) the router retries with backoff once every
# replica is full, which collapses a closed loop of 16 clients on one replica (docs/measurements.md);
# a replica's own queue is cheaper. The exported config.yaml carries the same value.
MAX_ONGOING = 64


@register
class RayServeStack(Stack):
    name = "rayserve"
    protocol = "sagemaker"  # the Ray Serve container's contract: an image body to /invocations
    knobs = CANONICAL_KNOBS  # batch_wait_timeout_s in (float) seconds: any delay
    description = "Ray Serve 2.60: POST /invocations (image body), any deploybench backend"
    install_hint = INSTALL

    def availability(self) -> Availability:
        if not (library_importable("ray") and library_importable("ray.serve") and library_importable("grpc")):
            return Availability(False, f"unavailable: ray[serve] not installed ({INSTALL})")
        return Availability(True)

    def settings(self, candidate: Candidate) -> dict[str, Any]:
        return {
            "num_replicas": candidate.workers,
            "num_cpus": candidate.threads,
            "max_batch_size": candidate.max_batch_size,
            "batch_wait_timeout_s": candidate.max_delay_ms / 1000.0 if candidate.max_batch_size > 1 else 0.0,
        }

    def command(
        self, launch: StackLaunch, ports: dict[str, int], prepared: dict[str, Any]
    ) -> tuple[list[str], dict[str, str]]:
        knobs = self.settings(launch.candidate)
        cpus = max(
            len(os.sched_getaffinity(0)), knobs["num_replicas"] * knobs["num_cpus"]
        )  # Ray schedules by CPUs
        command = [
            sys.executable, "-m", "deploybench.stacks.rayserve_app",
            "--model-json", launch.model.model_dump_json(), "--backend", launch.candidate.backend,
            "--port", str(ports["http"]), "--replicas", str(knobs["num_replicas"]),
            "--threads", str(knobs["num_cpus"]), "--max-batch-size", str(knobs["max_batch_size"]),
            "--wait-s", f"{knobs['batch_wait_timeout_s']:g}", "--cpus", str(cpus),
            "--max-ongoing", str(MAX_ONGOING),
        ]  # fmt: skip
        if launch.cache_dir is not None:
            command += ["--cache-dir", str(launch.cache_dir)]
        env = {**thread_env(launch.candidate.threads), "RAY_USAGE_STATS_ENABLED": "0"}
        return command, env

    def endpoint(self, ports: dict[str, int]) -> Endpoint:
        return Endpoint(loopback_url(ports["http"], "/invocations"), self.protocol, self.content_type)

    def is_ready(self, server: StackServer) -> bool:
        return http_get(loopback_url(server.ports["http"], "/ping"), timeout_s=2)[0] == 200

    def cleanup(self, server: StackServer) -> None:
        """Ray puts its actors in process groups of their own (same session): stopping the app's group
        leaves them to Ray's own shutdown; whatever of the session is still there after it is killed."""
        kill_session(server.pid)
