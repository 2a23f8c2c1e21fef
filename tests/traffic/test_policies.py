"""The autoscaling policies carry the plan's numbers, each in its own platform's terms."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from deploybench.traffic.policies import PolicyNumbers, write_policies

NUMBERS = PolicyNumbers(
    candidate="openvino-int8 w1t2",
    target_rps_per_instance=12.5,
    mean_latency_ms=40.0,
    min_instances=2,
    max_instances=25,
    reaction_s=180,
    launch_s=184.2,
    scale_in_s=600,
    metric_period_s=60,
)


def test_every_policy_is_written_and_parses(tmp_path: Path):
    paths = {p.name: p for p in write_policies(tmp_path / "autoscaling", NUMBERS)}
    sagemaker = json.loads(paths["sagemaker-autoscaling.json"].read_text())
    target = sagemaker["PutScalingPolicy"]["TargetTrackingScalingPolicyConfiguration"]
    assert target["TargetValue"] == 750.0  # invocations per instance per MINUTE
    assert (
        target["PredefinedMetricSpecification"]["PredefinedMetricType"]
        == "SageMakerVariantInvocationsPerInstance"
    )
    assert target["ScaleOutCooldown"] == 185 and target["ScaleInCooldown"] == 600
    assert sagemaker["RegisterScalableTarget"]["MinCapacity"] == 2
    assert sagemaker["RegisterScalableTarget"]["MaxCapacity"] == 25

    ray = yaml.safe_load(paths["ray-serve-autoscaling.yaml"].read_text())["autoscaling_config"]
    assert ray["target_ongoing_requests"] == 0.5  # Little's law: 12.5 req/s x 40 ms
    assert (ray["min_replicas"], ray["max_replicas"], ray["downscale_delay_s"]) == (2, 25, 600)

    kserve = yaml.safe_load(paths["kserve-inferenceservice.yaml"].read_text())
    annotations = kserve["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/metric"] == "rps"
    assert annotations["autoscaling.knative.dev/target"] == "12.50"
    assert annotations["autoscaling.knative.dev/target-utilization-percentage"] == "100"
    assert kserve["spec"]["predictor"]["minReplicas"] == 2

    hpa = yaml.safe_load(paths["kubernetes-hpa.yaml"].read_text())
    assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "12.50"
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert hpa["spec"]["maxReplicas"] == 25
