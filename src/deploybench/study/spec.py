"""The study definition: a YAML file validated by pydantic, every field overridable from the CLI."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, NonNegativeFloat, PositiveInt, ValidationError, field_validator, model_validator

from deploybench.config import (
    Constraints,
    Decoder,
    MachineSpec,
    ModelSpec,
    ParityThresholds,
    RuntimeKnobs,
    StrictModel,
)
from deploybench.inputs.payload import default_payload_path
from deploybench.results import Candidate
from deploybench.stacks import ALL, RENAMED, all_stacks


class StudyFileError(ValueError):
    """A study file that cannot be read or validated; the message names each bad field by its path."""


class KnobGrid(StrictModel):
    """Server knobs swept for the backends being tuned; pruned against the machine's cores.

    The runtime lists (streams ... decoder) are RuntimeKnobs fields: a backend is swept only
    over the ones it honours (Backend.runtime_knobs), the others stay at their defaults.
    """

    workers: list[PositiveInt] = Field(default_factory=lambda: [1, 2], min_length=1)
    threads: list[PositiveInt] | None = Field(None, description="per worker; None: cores // workers")
    max_batch_size: list[PositiveInt] = Field(default_factory=lambda: [1, 4], min_length=1)
    max_delay_ms: list[NonNegativeFloat] = Field(default_factory=lambda: [2.0], min_length=1)
    streams: list[PositiveInt] = Field(default_factory=lambda: [1], min_length=1)
    overlap: list[bool] = Field(default_factory=lambda: [False], min_length=1)
    pin: list[bool] = Field(default_factory=lambda: [True], min_length=1)
    front: list[Literal["shared", "rest"]] = Field(default_factory=lambda: ["shared"], min_length=1)
    inter_op_threads: list[PositiveInt] = Field(default_factory=lambda: [1], min_length=1)
    spin: list[bool | None] = Field(default_factory=lambda: [None], min_length=1)
    thread_pinning: list[bool] = Field(default_factory=lambda: [False], min_length=1)
    decoder: list[Decoder] = Field(
        default_factory=lambda: ["pillow"],
        min_length=1,
        description="who decodes image bodies (deploybench's server only); opt in with [pillow, torchvision]",
    )

    def runtime_options(self, honoured: frozenset[str]) -> list[RuntimeKnobs]:
        """Every combination of the runtime lists, knobs the backend ignores held at their default."""
        default = RuntimeKnobs()
        axes = {
            name: list(dict.fromkeys(getattr(self, name))) if name in honoured else [getattr(default, name)]
            for name in RuntimeKnobs.model_fields
        }
        return [
            RuntimeKnobs(**dict(zip(axes, values, strict=True)))
            for values in itertools.product(*axes.values())
        ]


class LoadPlan(StrictModel):
    """How each served candidate is load-tested: a concurrency sweep to the peak, plus fixed points."""

    concurrency_levels: list[PositiveInt] | None = Field(
        None, description="explicit closed-loop levels; None: 1, 2, 4, ... by the load generator's rule"
    )
    include_concurrency: list[PositiveInt] = Field(
        default_factory=lambda: [16],
        description="levels always measured (16: the load of the comparison the project grew from)",
    )
    max_concurrency: int = Field(16, ge=1, description="sweep cap; 16 is always measured anyway")
    window_s: float = Field(
        2.0, gt=0, description="shorter than the load generator's 5 s, so the default study fits 10 minutes"
    )
    min_window_requests: int = Field(20, ge=1)
    max_windows: int = Field(6, ge=3)
    warmup_s: float = Field(1.0, ge=0)
    point_max_s: float = Field(30.0, gt=0, description="upper bound on one point's measuring time")
    rate_search: bool = Field(True, description="with constraints.p99_ms: highest open-loop rate meeting it")
    rate_confirmations: int = Field(
        2,
        ge=0,
        le=5,
        description="the rate found is run this many times more and stands only if every run meets the "
        "bound (one run near the limit is a coin toss on a shared host)",
    )


class SearchSpec(StrictModel):
    """Successive halving over served measurements (study/search.py): every candidate a short probe,
    the best 1/eta a longer run, the best few (and those tied with the best) the full load plan."""

    enabled: bool = Field(True, description="False: every planned candidate gets the full load plan")
    eta: int = Field(3, ge=2, description="each round keeps the best 1/eta of its candidates")
    min_round2: int = Field(3, ge=1, description="at least this many get the longer run")
    finalists: int = Field(2, ge=1, description="at most this many best get the full plan (+ eager, stacks)")
    max_tied: int = Field(
        1, ge=0, description="extra finalists tied with the best (each one adds a full load plan)"
    )
    probe_window_s: float = Field(1.5, gt=0)
    probe_windows: int = Field(
        3,
        ge=3,
        description="the probe runoff's rounds, one window each (one after another: at most, as 3 "
        "agreeing windows end a point)",
    )
    probe_warmup_s: float = Field(
        0.2,
        ge=0,
        description="before each probe window in the runoff (the server idled while the others were "
        "measured); every batch size is warmed before a candidate's first window besides",
    )
    probe_servers: int = Field(
        8,
        ge=2,
        description="most probe servers up at once (one runoff); more candidates run as several runoffs "
        "sharing one reference candidate",
    )
    server_memory_mb: float = Field(
        1024.0,
        gt=0,
        description="an upper estimate of one server worker's memory: fewer probe servers are up at "
        "once where the memory available would not hold probe_servers of the widest",
    )
    probe_tied: int = Field(
        1,
        ge=0,
        description="extra candidates the probe keeps because its intervals cannot tell them from the "
        "last one kept (a few % of drift over the probes can decide that cut)",
    )
    round2_window_s: float = Field(3.0, gt=0, description="twice the probe's: the longer run")
    round2_windows: int = Field(6, ge=3)
    runoff_rounds: int = Field(
        6,
        ge=0,
        description="round 2 as a paired runoff of this many rounds (every contender served at once, one "
        "runoff_window_s window each per round, in turn; study/runoff.py); 0: one after another",
    )
    runoff_window_s: float = Field(
        2.5, gt=0, description="each runoff visit's window: short, as every contender gets one per round"
    )
    runoff_warmup_s: float = Field(0.5, ge=0, description="before each runoff window")
    runoff_first_warmup_s: float = Field(
        2.0,
        ge=0,
        description="before each contender's first window: a fresh server's first batches of each "
        "size are slow and would drag its first round down",
    )
    budget_s: float | None = Field(
        None,
        gt=0,
        description="the search's time budget in seconds (--budget 10m): past it the probe measures "
        "each backend in turn, a sample spread over its grid, and records the rest as not measured "
        "(study/budget.py); None: sized to the machine, 10 minutes up to 4 cores, 10 more per doubling "
        "and with a GPU, for each stack searched",
    )
    baseline_sweep: bool = Field(
        False,
        description="False: the eager baseline is measured at the plan's fixed concurrency levels only "
        "(16: the load of the comparison the project grew from): it is the comparison, never a contender",
    )


# Ray's node-label value syntax (Kubernetes labels), so a bad name fails here, not deep inside Ray.
INSTANCE_LABEL_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"


class ClusterSpec(StrictModel):
    """A running Ray cluster whose nodes carry the deploybench/instance-type label (see the README)."""

    address: str = Field(
        "auto",
        min_length=1,
        description='"auto" (the cluster this machine belongs to), HOST:PORT, or ray://HOST:10001',
    )


class ClusterMachine(StrictModel):
    """One machine type of a cluster study: the instance-type label of its node(s), priced by it."""

    instance: str = Field(pattern=INSTANCE_LABEL_PATTERN)
    price_per_hour: float | None = Field(None, gt=0, description="None: the price catalogue's")


class StudyConfig(StrictModel):
    """A whole study: the model, the payload, what to build and serve, how to load it, what to optimise."""

    name: str = "default"
    model: ModelSpec = Field(default_factory=ModelSpec)
    payload: Path | None = Field(None, description="file or folder of request bodies; None: bundled cat.jpg")
    eval_data: str | None = Field(
        None,
        description="labelled images (ImageFolder or CSV) scored per variant; 'bundled': the shipped set",
    )
    content_type: str = "image/jpeg"
    backends: list[str] | None = Field(None, description="None: every backend available here")
    stacks: list[str] = Field(
        default_factory=lambda: ["deploybench"],
        min_length=1,
        description="serving stacks: deploybench, torchserve, pytriton, litserve, or all (every installed)",
    )
    serve_top: int | None = Field(
        3,
        ge=0,
        description="serve eager plus the N fastest verified backends in-process (a choice of variants, "
        "not of knobs: every served backend gets the whole grid and the search decides); None: all",
    )
    serve_within: float | None = Field(
        0.6,
        gt=0,
        le=1,
        description="serve only backends at least this fraction of the in-process speed of the fastest one "
        "of their own precision (served batching and layouts cannot close a wider gap, and probing them "
        "costs minutes; a cheaper precision never cuts a full-precision backend); None: off",
    )
    tune_top: int | None = Field(
        None, ge=0, description="sweep the knob grid on the N fastest served backends; None: every one"
    )
    knobs: KnobGrid = Field(default_factory=KnobGrid)
    oversubscribe: bool = Field(False, description="allow workers x threads above the core count")
    variant_batch_sizes: list[PositiveInt] = Field(
        default_factory=lambda: [1],
        min_length=1,
        description="batch sizes timed in-process (batch 1 ranks the backends; served batching is "
        "measured by the search, so larger ones only add columns to the variants table)",
    )
    timing_budget_s: float = Field(2.0, gt=0, description="in-process timing per backend and batch size")
    load: LoadPlan = Field(default_factory=LoadPlan)
    search: SearchSpec = Field(default_factory=SearchSpec)
    constraints: Constraints = Field(default_factory=Constraints)
    parity: ParityThresholds = Field(default_factory=ParityThresholds)
    machine: MachineSpec = Field(default_factory=MachineSpec)
    startup_timeout_s: float = Field(600.0, gt=0)
    cluster: ClusterSpec | None = Field(None, description="None: this machine only")
    machines: list[ClusterMachine] = Field(
        default_factory=list, description="with cluster: the instance types to measure; []: every one it has"
    )

    @model_validator(mode="after")
    def _one_way_to_name_machines(self) -> StudyConfig:
        """`machine` describes this machine; `machines` the cluster's. Mixing them would misprice trials."""
        if self.machines and self.cluster is None:
            raise ValueError("machines: needs cluster: {address: ...} (or run with --cluster ADDRESS)")
        if self.cluster is not None and self.machine != MachineSpec():
            raise ValueError("machine: describes a single-machine study; a cluster study lists machines:")
        names = [m.instance for m in self.machines]
        if len(names) != len(set(names)):
            raise ValueError(f"machines: each instance type once, got {names}")
        return self

    @field_validator("stacks")
    @classmethod
    def _known_stacks(cls, names: list[str]) -> list[str]:
        names = [RENAMED.get(name, name) for name in names]  # a study file of an earlier release
        known = all_stacks()
        unknown = [name for name in names if name != ALL and name not in known]
        if unknown:
            raise ValueError(f"unknown stack(s) {', '.join(unknown)}; known: {', '.join(known)}, or {ALL}")
        return names


def study_model_spec(config: StudyConfig) -> ModelSpec:
    """The model as the study builds and serves it: a SageMaker archive or folder gets the study's
    payload and content type, so its input_fn sees the requests the load test will send."""
    # lazy: torch loads only for a SageMaker source, not to read a study file
    from deploybench.models.sagemaker import is_sagemaker_source

    spec = config.model
    local = Path(spec.source)
    if local.exists():  # servers start in their own work folders: a relative path would miss
        spec = spec.model_copy(update={"source": str(local.resolve())})
    if spec.payload is not None:
        spec = spec.model_copy(update={"payload": spec.payload.resolve()})
    if not is_sagemaker_source(spec.source) or spec.payload is not None:
        return spec
    payload = (config.payload or default_payload_path()).resolve()
    return spec.model_copy(update={"payload": payload, "content_type": config.content_type})


def launch_spec(config: StudyConfig, candidate: Candidate) -> ModelSpec:
    """The model as a candidate's server starts with it: study_model_spec, and for a built-in model
    served with a decoder other than Pillow, the study's own payload, which that decoder's agreement
    gate checks first (stacks/process.py gate_args): a load test's photos the gate never saw could be
    served further from Pillow's pixels than the 2/255 the gate allows."""
    spec = study_model_spec(config)
    if candidate.runtime.decoder == "pillow" or config.payload is None or spec.payload is not None:
        return spec
    return spec.model_copy(update={"payload": config.payload.resolve()})


def quick_overrides() -> dict[str, Any]:
    """--quick: one backend besides eager, no knob grid, three points each (a few minutes).

    Fewer points, not shorter ones: its windows are perf_analyzer's 5 s. On a shared host the same
    work varies over short windows by more than the stability tolerance, so short windows would flag
    the host's noise as the server's instability.
    """
    return {
        "serve_top": 1,
        "tune_top": 0,
        "timing_budget_s": 1.0,
        "variant_batch_sizes": [1],
        "load": {
            "concurrency_levels": [1, 4],
            "window_s": 5.0,
            "max_windows": 6,  # as many chances as the full study to find 3 agreeing windows
            "warmup_s": 1.0,
            "point_max_s": 45.0,
        },
    }


def _format_errors(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(part) for part in err["loc"]) or "(root)"
        lines.append(f"{origin}: {path}: {err['msg']}")
    return "\n".join(lines)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively overlay `override` on `base` (dicts merge, everything else replaces)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_study_config(path: Path | None, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read a study YAML (or the default study) and apply CLI overrides; errors name every bad field."""
    data: dict[str, Any] = {}
    origin = str(path) if path else "default study"
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise StudyFileError(f"{path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise StudyFileError(f"{path}: a study file is a mapping of fields, got {type(loaded).__name__}")
        data = loaded
    data = deep_merge(data, overrides or {})
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise StudyFileError(_format_errors(exc, origin)) from exc


def dump_study_config(config: StudyConfig) -> str:
    """The resolved config as YAML (study.yaml), so a study can be rerun and compared.

    The cluster's address is where the study runs, not what it measures: reaching the same cluster
    another way (auto, HOST:PORT, ray://) resumes the same study."""
    data = config.model_dump(mode="json", exclude={"cluster": {"address"}})
    return yaml.safe_dump(data, sort_keys=False)
