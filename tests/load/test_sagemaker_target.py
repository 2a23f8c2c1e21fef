"""boto3's sagemaker-runtime client against a local server that speaks the invocations contract."""

from __future__ import annotations

import pytest
from helpers.load_support import quick_cfg

from deploybench.load import SageMakerTarget, run_load

pytestmark = pytest.mark.slow


def test_boto3_invoke_endpoint_against_local_server(
    server_url: str, payloads: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    target = SageMakerTarget("my-endpoint", payloads, "image/jpeg", endpoint_url=server_url)
    report = run_load(target, quick_cfg(concurrency=4, max_windows=4, duration_s=4.0))
    point = report.points[0]
    assert point.errors == {}
    assert point.ok > 50
    assert point.bytes_received > point.ok * 20
    assert point.server_timing_ms == {"decode": pytest.approx(1.5), "infer": pytest.approx(4.0)}
    assert report.target["endpoint_name"] == "my-endpoint"


def test_boto3_target_counts_missing_endpoint_as_http_errors(
    server_url: str, payloads: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    target = SageMakerTarget("x", payloads, "image/jpeg", endpoint_url=f"{server_url}/nothing-here")
    cfg = quick_cfg(concurrency=1, max_windows=1, duration_s=1.5, warmup_requests=0, warmup_s=0.0)
    point = run_load(target, cfg).points[0]
    assert point.ok == 0 and set(point.errors) == {"http_404"}
