"""deploybench's own SageMaker-compatible server (`deploybench serve`): the reference for every stack."""

from __future__ import annotations

import json
from typing import Any, get_args

from deploybench.backends.base import Availability
from deploybench.config import Decoder
from deploybench.results import DEFAULT_STACK, Candidate
from deploybench.stacks.base import (
    CANONICAL_KNOBS,
    Endpoint,
    Stack,
    StackLaunch,
    StackServer,
    http_get,
    loopback_url,
    register,
)
from deploybench.stacks.process import serve_command

READY_FILE = "ready.json"  # `deploybench serve --json`: what each worker resolved and read back


@register
class DeploybenchStack(Stack):
    name = DEFAULT_STACK
    protocol = "sagemaker-http"
    knobs = CANONICAL_KNOBS  # and every runtime knob: deploybench-only
    decoders = frozenset(get_args(Decoder))  # inputs/decoders.py
    description = "deploybench serve: /ping + /invocations, raw image body, top-5 JSON"

    def availability(self) -> Availability:
        return Availability(True)

    def settings(self, candidate: Candidate) -> dict[str, Any]:
        """The server takes the canonical knobs as they are (its flags carry the same names), and
        every runtime knob explicitly (serve/placement.py, serve/inflight.py)."""
        return {
            "--workers": candidate.workers,
            "--threads": candidate.threads,
            "--max-batch-size": candidate.max_batch_size,
            "--max-delay-ms": candidate.max_delay_ms,
            **{
                f"--{name.replace('_', '-')}": value for name, value in candidate.runtime.model_dump().items()
            },
        }

    def command(
        self, launch: StackLaunch, ports: dict[str, int], prepared: dict[str, Any]
    ) -> tuple[list[str], dict[str, str]]:
        command = serve_command(launch.model, launch.candidate, ports["http"], launch.cache_dir)
        ready = launch.workdir / READY_FILE
        ready.unlink(missing_ok=True)
        return [*command, "--json", str(ready)], {}

    def endpoint(self, ports: dict[str, int]) -> Endpoint:
        return Endpoint(loopback_url(ports["http"], "/invocations"), self.protocol, self.content_type)

    def is_ready(self, server: StackServer) -> bool:
        return http_get(loopback_url(server.ports["http"], "/ping"), timeout_s=2)[0] == 200

    def reported(self, server: StackServer) -> dict[str, Any]:
        """Where each worker runs and what its runtime read back (cores, threads' masks, streams,
        batches in flight, the runtime's own settings), from the server's ready description."""
        info = json.loads((server.workdir / READY_FILE).read_text())
        workers = [{k: v for k, v in worker.items() if k != "pid"} for worker in info.get("workers", [])]
        return {"placement": info.get("placement"), "workers": workers}
