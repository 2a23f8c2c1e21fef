"""Autoscaling policies to paste, for SageMaker, Ray Serve, KServe (Knative) and a Kubernetes HPA,
each from the same planned numbers, so the four say the same thing in their own terms.

What each maps, and why:
- the target: the plan's per-instance rate (the measured rate that meets the p99 bound, times the
  utilisation that leaves room for the traffic's rise over the scale-out lag). SageMaker counts
  invocations per instance per minute (x 60); Knative, KServe and the HPA a rate per pod; Ray Serve
  ongoing requests per replica, which by Little's law is the rate times the mean latency there.
  No further utilisation factor (Knative's target-utilization-percentage is 100): the plan's
  target already holds the margin, and a second one would pay for it twice.
- min and max: the plan's minimum fleet and the most instances any hour of it needs.
- scale-out cooldown: the time a new instance takes to serve (provisioning + cold start), so the
  autoscaler does not start a second wave for a rise the first one already covers.
- scale-in: the plan's scale-in delay, so a dip shorter than it keeps the fleet.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml
from pydantic import Field

from deploybench.config import StrictModel


class PolicyNumbers(StrictModel):
    """What every policy is derived from (one candidate's fleet plan)."""

    candidate: str = Field(description="the candidate's label")
    target_rps_per_instance: float = Field(gt=0)
    mean_latency_ms: float = Field(gt=0, description="mean latency measured near the target rate")
    min_instances: int = Field(ge=1)
    max_instances: int = Field(ge=1)
    reaction_s: float = Field(ge=0)
    launch_s: float = Field(ge=0, description="provisioning + cold start: a new instance to serving")
    scale_in_s: float = Field(ge=0)
    metric_period_s: float = Field(gt=0)


def _header(numbers: PolicyNumbers, comment: str) -> str:
    return (
        f"{comment} deploybench autoscaling policy for {numbers.candidate}: target "
        f"{numbers.target_rps_per_instance:.2f} req/s per instance, {numbers.min_instances}-"
        f"{numbers.max_instances} instances\n"
    )


def sagemaker_policy(numbers: PolicyNumbers, endpoint: str = "ENDPOINT_NAME") -> dict:
    """`aws application-autoscaling register-scalable-target` and `put-scaling-policy` inputs."""
    resource = f"endpoint/{endpoint}/variant/AllTraffic"
    return {
        "RegisterScalableTarget": {
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource,
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "MinCapacity": numbers.min_instances,
            "MaxCapacity": numbers.max_instances,
        },
        "PutScalingPolicy": {
            "PolicyName": "deploybench-target-tracking",
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource,
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": round(numbers.target_rps_per_instance * 60, 1),
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
                "ScaleOutCooldown": math.ceil(numbers.launch_s),
                "ScaleInCooldown": math.ceil(numbers.scale_in_s),
            },
        },
    }


def ray_serve_config(numbers: PolicyNumbers) -> dict:
    """A deployment's `autoscaling_config` (one replica = one measured instance's resources)."""
    ongoing = numbers.target_rps_per_instance * numbers.mean_latency_ms / 1000
    return {
        "autoscaling_config": {
            "min_replicas": numbers.min_instances,
            "max_replicas": numbers.max_instances,
            "target_ongoing_requests": round(max(ongoing, 0.01), 2),
            "upscale_delay_s": round(numbers.reaction_s, 1),
            "downscale_delay_s": round(numbers.scale_in_s, 1),
            "look_back_period_s": round(numbers.metric_period_s, 1),
        }
    }


def kserve_service(numbers: PolicyNumbers, name: str = "deploybench-model") -> dict:
    """An InferenceService scaling on requests per second (Knative's rps metric)."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "annotations": {
                "autoscaling.knative.dev/metric": "rps",
                "autoscaling.knative.dev/target": f"{numbers.target_rps_per_instance:.2f}",
                "autoscaling.knative.dev/target-utilization-percentage": "100",
                "autoscaling.knative.dev/window": f"{math.ceil(numbers.metric_period_s)}s",
                "autoscaling.knative.dev/scale-down-delay": f"{math.ceil(numbers.scale_in_s)}s",
            },
        },
        "spec": {
            "predictor": {
                "minReplicas": numbers.min_instances,
                "maxReplicas": numbers.max_instances,
                "scaleMetric": "rps",
                "scaleTarget": max(1, math.floor(numbers.target_rps_per_instance)),
            }
        },
    }


def kubernetes_hpa(numbers: PolicyNumbers, deployment: str = "deploybench-model") -> dict:
    """An autoscaling/v2 HPA on a per-pod request rate (served by a metrics adapter, e.g. Prometheus')."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": deployment},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "minReplicas": numbers.min_instances,
            "maxReplicas": numbers.max_instances,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "http_requests_per_second"},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": f"{numbers.target_rps_per_instance:.2f}",
                        },
                    },
                }
            ],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0},
                "scaleDown": {"stabilizationWindowSeconds": math.ceil(numbers.scale_in_s)},
            },
        },
    }


def policy_texts(numbers: PolicyNumbers) -> dict[str, str]:
    """File name -> contents of every policy."""
    texts = {
        "sagemaker-autoscaling.json": json.dumps(sagemaker_policy(numbers), indent=2) + "\n",
        "ray-serve-autoscaling.yaml": _header(numbers, "#")
        + yaml.safe_dump(ray_serve_config(numbers), sort_keys=False),
        "kserve-inferenceservice.yaml": _header(numbers, "#")
        + yaml.safe_dump(kserve_service(numbers), sort_keys=False),
        "kubernetes-hpa.yaml": _header(numbers, "#")
        + "# the per-pod metric http_requests_per_second must be served by a metrics adapter\n"
        + yaml.safe_dump(kubernetes_hpa(numbers), sort_keys=False),
    }
    return texts


def write_policies(folder: Path, numbers: PolicyNumbers) -> list[Path]:
    """Write every policy into folder (created); returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in policy_texts(numbers).items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
