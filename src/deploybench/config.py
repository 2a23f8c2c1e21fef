"""Validated configuration shared by every part of deploybench.

Configs are plain data with no side effects: resolving the environment (devices, threads,
library versions) is an explicit step recorded with every trial.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Base for every config and record: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class ModelSpec(StrictModel):
    """Where the model comes from and which weights it carries."""

    source: str = Field(
        "torchvision:resnet50",
        description="torchvision:<name> | efficientnet-lite0 | FILE.pt (TorchScript) | FILE.onnx"
        " | module:function",
    )
    weights: str = Field("auto", description="auto | pretrained | random | path to a state dict")
    input_shape: tuple[int, int, int] = (3, 224, 224)


class ParityThresholds(StrictModel):
    """Per-precision limits a variant must meet against eager fp32 before it may be ranked.

    `*_min_cosine` bounds the 10th percentile of the per-input centred cosine (the typical input);
    `*_cosine_floor` bounds the worst input, so one catastrophic output still rejects. fp32 applies
    its limit to every input. int8 is judged like a quantisation accuracy check: a few unusual
    inputs (smooth synthetic fields) may drift, the bulk and the top-1 may not.
    """

    fp32_min_cosine: float = 0.9999
    fp32_min_top1: float = 0.99
    reduced_min_cosine: float = 0.99
    reduced_cosine_floor: float = 0.95
    reduced_min_top1: float = 0.90
    int8_min_cosine: float = 0.95
    int8_cosine_floor: float = 0.80
    int8_min_top1: float = 0.75


class ServerConfig(StrictModel):
    """Knobs of one served endpoint (the things a study sweeps)."""

    backend: str = "eager"
    workers: int = Field(1, ge=1, le=64)
    threads: int = Field(1, ge=1, le=256, description="intra-op threads per worker")
    max_batch_size: int = Field(1, ge=1, le=256)
    max_delay_ms: float = Field(2.0, ge=0, le=1000)
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_mb: float = Field(6.0, gt=0)
    timeout_s: float = Field(60.0, gt=0, description="per request, reading the body included")
    max_queue_size: int = Field(
        100,
        ge=1,
        le=1_000_000,
        description="requests waiting for a worker before new ones get 503 (TorchServe job_queue_size)",
    )
    max_worker_restarts: int = Field(
        5, ge=0, le=1000, description="crashes in a row (no batch answered between) before a worker is failed"
    )
    debug: bool = False


class LoadConfig(StrictModel):
    """How a load test drives one endpoint. Owned by deploybench.load."""

    concurrency: int | None = Field(None, ge=1, le=4096)
    rate: float | None = Field(None, gt=0)
    arrival: Literal["constant", "poisson"] = "constant"
    seed: int = 0
    duration_s: float = Field(30.0, gt=0, le=3600)
    max_requests: int | None = Field(None, ge=1)
    warmup_requests: int = Field(20, ge=0)
    warmup_s: float = Field(2.0, ge=0)
    window_s: float = Field(5.0, gt=0)
    min_window_requests: int = Field(50, ge=1)
    max_windows: int = Field(10, ge=1)
    stability_tolerance: float = Field(0.10, gt=0, lt=1)
    sweep: Literal["none", "concurrency", "rate"] = "none"
    slo_p99_ms: float | None = Field(None, gt=0)
    processes: int = Field(1, ge=1, le=64)
    request_timeout_s: float = Field(30.0, gt=0)


class Constraints(StrictModel):
    """What the user needs from a deployment, and what to optimise among those that qualify."""

    p99_ms: float | None = Field(None, gt=0)
    min_throughput: float | None = Field(None, gt=0)
    objective: Literal["cost", "throughput", "p99"] = "cost"
