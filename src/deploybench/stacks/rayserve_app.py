"""The Ray Serve application of the `rayserve` stack: any deploybench variant in a Serve deployment.

The SageMaker contract on loopback, as AWS's Ray Serve inference containers expose it (`/ping` and
`/invocations` in front of the application): POST an image body to /invocations, deploybench's top-5
JSON back. Knobs: workers -> num_replicas, threads -> num_cpus per replica (and the variant's
intra-op threads), max_batch_size / max_delay_ms -> @serve.batch's max_batch_size and
batch_wait_timeout_s. Each replica builds the variant with build_variant (the study's artifact cache)
and decodes with THE reference preprocessing. A local Ray instance with the machine's cores is started
here and shut down on SIGTERM, so the whole tree stops with the process group.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import ray
import yaml
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

TOP_K = 5
APP_NAME = "deploybench"


@serve.deployment
class VisionDeployment:
    """One replica: the variant, built once; requests decoded here and predicted in Serve's batches."""

    def __init__(self, spec_json: str, backend: str, threads: int, cache_dir: str | None, batch: int) -> None:
        # lazy: torch loads in the replicas only
        from deploybench.backends.build import build_variant, example_batch
        from deploybench.config import ModelSpec

        spec = ModelSpec.model_validate_json(spec_json)
        cache = Path(cache_dir) if cache_dir else None
        self.variant, loaded = build_variant(spec, backend, threads=threads, cache_dir=cache)
        self.labels = loaded.labels
        for size in (1, 1, batch):  # every batch size warm before the replica counts as ready
            self.variant.predict(example_batch(loaded, size))

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        logits = self.variant.predict(np.ascontiguousarray(np.stack(images)))
        return list(logits)

    async def __call__(self, request: Request) -> Response:
        # lazy: in the replicas only
        from deploybench.inputs.payload import PayloadError, preprocess
        from deploybench.sagemaker.codecs import top_k_json

        if request.url.path.rstrip("/").endswith("ping"):
            return Response(status_code=200)
        try:
            image = preprocess(await request.body())
        except PayloadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        logits = await self.predict(image)
        return Response(top_k_json(logits, self.labels, TOP_K), media_type="application/json")

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Serve's user_config hook: the batching knobs, set on the replica before it takes traffic."""
        self.predict.set_max_batch_size(int(config["max_batch_size"]))
        self.predict.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))


def deployment(args: argparse.Namespace) -> Any:
    """The application with the candidate's knobs; thread variables reach the replica processes."""
    env = {key: str(args.threads) for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    options = {
        "num_replicas": args.replicas,
        "max_ongoing_requests": args.max_ongoing,
        "ray_actor_options": {"num_cpus": args.threads, "runtime_env": {"env_vars": env}},
        "user_config": {"max_batch_size": args.max_batch_size, "batch_wait_timeout_s": args.wait_s},
        "logging_config": {"enable_access_log": False, "log_level": "WARNING"},  # no line per request
    }
    bound = VisionDeployment.options(**options)
    return bound.bind(args.model_json, args.backend, args.threads, args.cache_dir, args.max_batch_size)


def exported_application(folder: Path) -> tuple[Any, dict[str, Any], dict[str, str]]:
    """(the exported application with config.yaml's deployment options, the app's entry, its env_vars),
    read as the Ray Serve container reads them: the knobs come from config.yaml, never from here."""
    config = yaml.safe_load((folder / "config.yaml").read_text())
    entry = config["applications"][0]
    module_name, attribute = entry["import_path"].split(":")
    sys.path.insert(0, str(folder))
    bound = getattr(importlib.import_module(module_name), attribute)
    options = {k: v for k, v in entry["deployments"][0].items() if k != "name"}
    deployment = bound._bound_deployment  # the Application's deployment
    return deployment.options(**options).bind(), entry, entry.get("runtime_env", {}).get("env_vars", {})


def serve_exported(folder: Path, port: int, cpus: int, stop: threading.Event) -> None:
    """Run an exported Ray Serve archive on loopback, as its config.yaml says (deploybench serve PATH)."""
    app, entry, env = exported_application(folder)
    # the replicas import deployment.py and what it imports from code/, as the container's working_dir gives
    runtime_env = {"env_vars": {**env, "PYTHONPATH": f"{folder}{os.pathsep}{folder / 'code'}"}}
    ray.init(num_cpus=cpus, include_dashboard=False, configure_logging=False, runtime_env=runtime_env)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(app, name=entry["name"], route_prefix=entry.get("route_prefix", "/"))
        print(f"rayserve: ready on http://127.0.0.1:{port}/invocations ({folder}/config.yaml)", flush=True)
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exported", type=Path, default=None, help="an exported sagemaker-rayserve folder")
    parser.add_argument("--model-json", default=None, help="deploybench ModelSpec as JSON")
    parser.add_argument("--backend", default=None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=1)
    parser.add_argument("--wait-s", type=float, default=0.0, help="batch_wait_timeout_s, seconds")
    parser.add_argument("--max-ongoing", type=int, default=5, help="max_ongoing_requests per replica")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="the local Ray's CPUs")
    parser.add_argument("--cache-dir", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.exported is not None:
        serve_exported(args.exported, args.port, args.cpus, stop)
        return
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=True, configure_logging=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        serve.run(deployment(args), name=APP_NAME, route_prefix="/")
        print(f"rayserve: ready on http://127.0.0.1:{args.port}/invocations", flush=True)
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
