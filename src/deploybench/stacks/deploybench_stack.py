"""deploybench's own SageMaker-compatible server (`deploybench serve`): the reference for every stack."""

from __future__ import annotations

from typing import Any

from deploybench.backends.base import Availability
from deploybench.results import DEFAULT_STACK, Candidate
from deploybench.stacks.base import (
    Endpoint,
    Stack,
    StackLaunch,
    StackServer,
    http_get,
    loopback_url,
    register,
)
from deploybench.study.launcher import serve_command


@register
class DeploybenchStack(Stack):
    name = DEFAULT_STACK
    protocol = "sagemaker-http"
    description = "deploybench serve: /ping + /invocations, raw image body, top-5 JSON"

    def availability(self) -> Availability:
        return Availability(True)

    def settings(self, candidate: Candidate) -> dict[str, Any]:
        """The server takes the canonical knobs as they are (its flags carry the same names)."""
        return {
            "--workers": candidate.workers,
            "--threads": candidate.threads,
            "--max-batch-size": candidate.max_batch_size,
            "--max-delay-ms": candidate.max_delay_ms,
        }

    def command(
        self, launch: StackLaunch, ports: dict[str, int], prepared: dict[str, Any]
    ) -> tuple[list[str], dict[str, str]]:
        return serve_command(launch.model, launch.candidate, ports["http"], launch.cache_dir), {}

    def endpoint(self, ports: dict[str, int]) -> Endpoint:
        return Endpoint(loopback_url(ports["http"], "/invocations"), self.protocol, self.content_type)

    def is_ready(self, server: StackServer) -> bool:
        return http_get(loopback_url(server.ports["http"], "/ping"), timeout_s=2)[0] == 200
