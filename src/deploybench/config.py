"""Validated configuration shared by every part of deploybench.

Configs are plain data with no side effects: resolving the environment (devices, threads,
library versions) is an explicit step recorded with every trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator


class StrictModel(BaseModel):
    """Base for every config and record: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class ModelSpec(StrictModel):
    """Where the model comes from and which weights it carries."""

    source: str = Field(
        "torchvision:resnet50",
        description="torchvision:<name> | efficientnet-lite0/1/2 | FILE.pt (TorchScript) | FILE.onnx"
        " | module:function | a SageMaker model.tar.gz or model folder (code/inference.py)",
    )
    weights: str = Field("auto", description="auto | pretrained | random | path to a state dict")
    input_shape: tuple[int, int, int] = Field(
        (3, 224, 224), description="SageMaker sources with a payload: read from what input_fn returns"
    )
    calibration_data: Path | None = Field(
        None, description="folder of images for int8 calibration; None: the bundled calibration photos"
    )
    payload: Path | None = Field(
        None,
        description="SageMaker sources: request bodies (file or folder) your handler reads; run through it, "
        "they give the network's input shape, decide whether a variant may stand in for the network, and "
        "come first among the parity inputs",
    )
    content_type: str = Field(
        "image/jpeg",
        description="SageMaker sources: the Content-Type of those bodies (and of calibration photos)",
    )


def is_random_weights(weights: str) -> bool:
    """Random weights, with or without re-estimated BatchNorm statistics: predictions mean nothing."""
    return weights.startswith("random")


class ParityThresholds(StrictModel):
    """Per-precision limits a variant must meet against eager fp32 before it may be ranked.

    `*_min_cosine` bounds the 10th percentile of the per-input cosine of the input-dependent logits
    (the typical input), `*_cosine_floor` the worst input; fp32 applies its limit to every input.
    `*_max_rel_err` bounds the largest logit error over the input's logit range (cosine is blind to
    scale). Each limit sits with a margin below what correct builds of pretrained networks reach
    (bench/parity_thresholds.py), so a correct build of any backend passes; none is set to let a
    particular backend pass.
    min_input_variation: below it the reference's outputs barely depend on the input and nothing
    can be verified.
    min_batch_consistency: the worst input's cosine between a variant's own outputs at two batch sizes;
    a correct backend agrees with itself more closely than a change of precision would, and a batch
    that swaps or repeats rows scores far below.
    random_min_cosine: a random network amplifies rounding far beyond a trained one, so a
    reduced-precision variant of a random-weight model has its backend judged on a trained stand-in
    with the limits above (backends/stand_in.py), and its own artifact only against this floor on the
    cosine p10: correct builds stay above it, broken ones fall well below zero.
    """

    fp32_min_cosine: float = 0.9999
    fp32_min_top1: float = 0.99
    reduced_min_cosine: float = 0.99
    reduced_cosine_floor: float = 0.95
    reduced_min_top1: float = 0.90
    int8_min_cosine: float = 0.55
    int8_cosine_floor: float = 0.40
    int8_min_top1: float = 0.60
    fp32_max_rel_err: float = 1e-3
    reduced_max_rel_err: float = 0.2
    int8_max_rel_err: float = 0.6
    min_input_variation: float = 1e-3
    min_batch_consistency: float = 0.9
    random_min_cosine: float = 0.0


# Where a request's image is decoded and resized (inputs/decoders.py): Pillow on the CPU (THE reference
# preprocessing), torchvision's decoder on the CPU, or nvJPEG on the GPU; the same float32 input either way.
Decoder = Literal["pillow", "torchvision", "torchvision-cuda"]


class RuntimeKnobs(StrictModel):
    """How one worker runs its model beyond the thread count: core placement, concurrency, waiting.

    Every field is explicit and recorded with every trial, so a search can enumerate them; which
    backend honours which knob is declared by the backend (Backend.runtime_knobs). Defaults are
    the settings that served best in bench/serve_overhead.py.
    """

    pin: bool = Field(
        True, description="each worker gets its own cores (sched_setaffinity); its threads stay inside"
    )
    front: Literal["shared", "rest"] = Field(
        "shared", description="HTTP front process: on every core, or only on cores no worker was given"
    )
    streams: int = Field(
        1, ge=1, le=64, description="inferences in flight at once in one worker (OpenVINO NUM_STREAMS)"
    )
    overlap: bool = Field(False, description="decode the next batch while the current one infers")
    inter_op_threads: int = Field(1, ge=1, le=64, description="ONNX Runtime / torch inter-op threads")
    spin: bool | None = Field(
        None,
        description="idle runtime threads spin (ORT allow_spinning, OMP_WAIT_POLICY=ACTIVE); None: the "
        "setting that serves best per runtime: ONNX Runtime spins when a worker has 2+ threads, OpenMP "
        "keeps libgomp's spin-then-sleep (passive waiting makes every parallel region sleep and wake, "
        "active waiting starves every process beside the worker)",
    )
    thread_pinning: bool = Field(
        False, description="the runtime pins each of its threads to one core of the worker's cores"
    )
    decoder: Decoder = Field(
        "pillow",
        description="image decode + resize + crop: pillow (the reference) | torchvision (CPU) | "
        "torchvision-cuda (JPEG decoded on the GPU); deploybench's own server only, the server refuses "
        "a decoder whose pixels differ from Pillow's by more than 2/255 on the parity photos",
    )

    def threads_per_stream(self, threads: int) -> int:
        """Each of a worker's concurrent inferences gets an equal share of its threads."""
        return max(1, threads // self.streams)

    @property
    def key_suffix(self) -> str:
        """The knobs that differ from the defaults, in a fixed order ('' when all are defaults)."""
        default = RuntimeKnobs()
        tags = {
            "pin": "" if self.pin else "nopin",
            "front": f"front-{self.front}",
            "streams": f"s{self.streams}",
            "overlap": "ovl",
            "inter_op_threads": f"io{self.inter_op_threads}",
            "spin": "spin" if self.spin else "nospin",
            "thread_pinning": "tpin",
            "decoder": f"dec-{self.decoder}",
        }
        return "-".join(tag for name, tag in tags.items() if getattr(self, name) != getattr(default, name))


def check_streams(threads: int, runtime: RuntimeKnobs) -> None:
    """Each stream needs at least one of the worker's threads."""
    if runtime.streams > threads:
        raise ValueError(f"streams ({runtime.streams}) cannot exceed threads per worker ({threads})")


class ServerConfig(StrictModel):
    """Knobs of one served endpoint (the things a study sweeps)."""

    backend: str = "eager"
    workers: int = Field(1, ge=1, le=64)
    threads: int = Field(1, ge=1, le=256, description="intra-op threads per worker")
    max_batch_size: int = Field(1, ge=1, le=256)
    max_delay_ms: float = Field(2.0, ge=0, le=1000)
    runtime: RuntimeKnobs = Field(default_factory=RuntimeKnobs)
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

    @model_validator(mode="after")
    def _streams_fit(self) -> ServerConfig:
        check_streams(self.threads, self.runtime)
        return self


class LoadConfig(StrictModel):
    """How a load test drives one endpoint. Owned by deploybench.load."""

    concurrency: int | None = Field(None, ge=1, le=4096)
    rate: float | None = Field(None, gt=0)
    arrival: Literal["constant", "poisson", "intervals"] = "constant"
    request_intervals_us: list[PositiveInt] | None = Field(
        None,
        description="arrival 'intervals': the gaps between successive sends, in microseconds, replayed "
        "in order and repeated (perf_analyzer's --request-intervals); the rate is their mean",
    )
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
    rate_confirmations: int = Field(
        0,
        ge=0,
        le=5,
        description="rate sweep: the rate found is measured this many times more (new arrival seeds) "
        "and stands only if every run meets the bound; else the search steps down",
    )
    processes: int = Field(1, ge=1, le=64)
    request_timeout_s: float = Field(30.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _intervals_set_the_rate(cls, data: Any) -> Any:
        """A trace of intervals is an open loop at the trace's mean rate; both ways to ask must agree."""
        if not isinstance(data, dict):
            return data
        intervals, arrival = data.get("request_intervals_us"), data.get("arrival", "constant")
        if (intervals is not None) != (arrival == "intervals"):
            raise ValueError("arrival 'intervals' and request_intervals_us go together")
        if not intervals:
            return data
        if data.get("sweep") == "rate":
            raise ValueError("request_intervals_us fixes the schedule: no rate sweep over it")
        mean_rate = 1e6 * len(intervals) / max(sum(intervals), 1)
        rate = data.get("rate")
        if rate is not None and abs(rate / mean_rate - 1) > 0.01:
            raise ValueError(f"rate {rate} differs from the intervals' mean rate {mean_rate:.3f}: give one")
        return {**data, "rate": mean_rate}


class Constraints(StrictModel):
    """What the user needs from a deployment, and what to optimise among those that qualify."""

    p99_ms: float | None = Field(None, gt=0)
    min_throughput: float | None = Field(None, gt=0)
    objective: Literal["cost", "throughput", "p99"] = "cost"
    max_accuracy_drop: float | None = Field(
        None, ge=0, description="percentage points of top-1 a variant may lose against eager fp32"
    )
    reject_significant_drop: bool = Field(
        False, description="also exclude variants whose top-1 drop is significant (McNemar, p < 0.05)"
    )


class MachineSpec(StrictModel):
    """The machine the study runs on and its price: given, or the catalogue entry matching the
    detected CPU family and vCPUs (deploybench.pricing.machine)."""

    label: str | None = None
    instance: str | None = None
    price_per_hour: float | None = Field(None, gt=0)
    unpriced: bool = Field(False, description="run without a price when no catalogue entry matches")
