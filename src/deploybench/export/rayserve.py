"""The `sagemaker-rayserve` export target: the archive of AWS's Ray Serve inference containers.

Their model.tar.gz is config.yaml + deployment.py (+ code/requirements.txt); the container serves the
application config.yaml names, with /ping and /invocations in front. This target writes both around the
same compiled artifact and generated code/inference.py as the SageMaker PyTorch archive, with every
measured knob in config.yaml (num_replicas = workers, num_cpus per replica = threads, @serve.batch's
max_batch_size and batch_wait_timeout_s through user_config), and rayservice.yaml, a KubeRay RayService
for the same application. What Ray Serve cannot run as measured is refused with the reason: deploybench's
server-only runtime knobs, batching behind a per-request handler (the network-call gathering is
deploybench's server's), and handler functions that take TorchServe's `context`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import yaml

from deploybench.export.choose import ExportError
from deploybench.export.package import render
from deploybench.models.loaded import LoadedModel
from deploybench.models.sagemaker import model_folder, open_handler
from deploybench.report.deployable import rayserve_refusal
from deploybench.results import Candidate
from deploybench.stacks.rayserve_stack import MAX_ONGOING

RAY_VERSION = "2.60.0"  # the stack's and the executor's Ray
APP = "deploybench"
DEPLOYMENT = "Deploybench"
RAY_IMAGE = f"rayproject/ray:{RAY_VERSION}-py311-cpu"
USER_FUNCTIONS = ("input_fn", "predict_fn", "output_fn", "transform_fn")


def refusal(model: LoadedModel, candidate: Candidate) -> str | None:
    """Why this candidate cannot be deployed on Ray Serve as measured (None: it can): the knob rules
    of report/deployable.py, then what the user's handler functions allow (their code loaded)."""
    why = rayserve_refusal(candidate, model.handler is not None)
    if why is not None or model.handler is None:
        return why
    return _handler_refusal(model)


def _handler_refusal(model: LoadedModel) -> str | None:
    assert model.handler is not None
    handler = open_handler(model_folder(model.spec.source), model.spec.source)
    defined = [name for name in USER_FUNCTIONS if callable(getattr(handler.module, name, None))]
    if "transform_fn" not in defined and not {"input_fn", "predict_fn", "output_fn"} <= set(defined):
        return "Ray Serve runs your input_fn, predict_fn and output_fn (or transform_fn): define them all"
    for name in defined:
        base = 4 if name == "transform_fn" else 2
        if len(inspect.signature(getattr(handler.module, name)).parameters) > base:
            return f"your {name} takes TorchServe's `context`, which Ray Serve has no equivalent of"
    return None


def application(candidate: Candidate, trial_id: str) -> dict[str, Any]:
    """The Serve application with the measured knobs (config.yaml's and the RayService's)."""
    batch = candidate.max_batch_size
    threads = str(candidate.threads)
    return {
        "name": APP,
        "route_prefix": "/",
        "import_path": "deployment:app",
        "runtime_env": {"env_vars": {"OMP_NUM_THREADS": threads, "DEPLOYBENCH_TRIAL": trial_id}},
        "deployments": [
            {
                "name": DEPLOYMENT,
                "num_replicas": candidate.workers,
                "max_ongoing_requests": MAX_ONGOING,  # as the rayserve stack measured it
                "ray_actor_options": {"num_cpus": candidate.threads},
                "user_config": {
                    "max_batch_size": batch,
                    "batch_wait_timeout_s": candidate.max_delay_ms / 1000.0 if batch > 1 else 0.0,
                },
            }
        ],
    }


def config_yaml(candidate: Candidate, trial_id: str, port: int = 8000, host: str = "0.0.0.0") -> str:
    """Ray Serve's config file: HTTP on every interface in the container (8000, Serve's default)."""
    config = {
        "http_options": {"host": host, "port": port},
        "applications": [application(candidate, trial_id)],
    }
    return yaml.safe_dump(config, sort_keys=False)


def rayservice_yaml(candidate: Candidate, trial_id: str, name: str) -> str:
    """A KubeRay RayService for the same application: one worker group with the measured CPUs."""
    cpus = candidate.workers * candidate.threads
    app = application(candidate, trial_id)
    app["runtime_env"]["working_dir"] = "s3://YOUR-BUCKET/PATH/model.zip"  # this archive's files, zipped
    container = {"name": "ray", "image": RAY_IMAGE, "resources": {"requests": {"cpu": str(cpus)}}}
    worker = {
        "groupName": "cpu",
        "replicas": 1,
        "rayStartParams": {"num-cpus": str(cpus)},
        "template": {"spec": {"containers": [{**container, "name": "ray-worker"}]}},
    }
    head = {
        "rayStartParams": {"num-cpus": "0"},  # replicas run on the worker group only
        "template": {"spec": {"containers": [{**container, "name": "ray-head", "resources": {}}]}},
    }
    manifest = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": name},
        "spec": {
            "serveConfigV2": yaml.safe_dump({"applications": [app]}, sort_keys=False),
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "headGroupSpec": head,
                "workerGroupSpecs": [worker],
            },
        },
    }
    return yaml.safe_dump(manifest, sort_keys=False)


def lay_out_rayserve(root: Path, model: LoadedModel, candidate: Candidate, context: dict[str, Any]) -> None:
    """deployment.py, config.yaml and rayservice.yaml beside the SageMaker archive's files."""
    why = refusal(model, candidate)
    if why is not None:
        raise ExportError(f"{candidate.key}: sagemaker-rayserve cannot run it as measured: {why}")
    handler = None if model.handler is None else {"transform": "transform_fn" in model.handler.defined}
    page = {**context, "handler": handler, "trial_id": candidate.key}
    (root / "deployment.py").write_text(_rendered("deployment.py.j2", page))
    (root / "config.yaml").write_text(config_yaml(candidate, candidate.key))
    slug = "".join(c if c.isalnum() else "-" for c in candidate.key.lower()).strip("-")[:50]
    (root / "rayservice.yaml").write_text(rayservice_yaml(candidate, candidate.key, f"deploybench-{slug}"))


def _rendered(template: str, page: dict[str, Any]) -> str:
    source = render(template, page)
    compile(source, template.removesuffix(".j2"), "exec")  # a template bug never reaches a container
    return source
