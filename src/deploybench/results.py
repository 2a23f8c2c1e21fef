"""Result records: plain data written as JSON Lines that pandas reads.

Measurements keep raw numbers (encoded HDR histograms) next to derived statistics, so anything
that merges (windows, processes, machines) can merge raw data, never averages of percentiles.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from deploybench.config import RuntimeKnobs, StrictModel, check_streams

SCHEMA_VERSION = 1


class LatencyStats(StrictModel):
    """Latency percentiles in milliseconds, derived from one HDR histogram."""

    count: int = 0
    mean_ms: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0


class SloVerdict(StrictModel):
    """An SLO claim (e.g. p99 <= 50 ms) checked with MLPerf LoadGen's early-stopping test.

    status: "met" (LoadGen's test passes: the claim holds at `confidence`), "missed" (the mirror test:
    so many overshoots that the percentile is above the bound at `confidence`), or "undecided" (too
    few requests either way; never a claim). `met` is status == "met", kept for older readers.
    """

    percentile: float = 99.0
    bound_ms: float
    met: bool
    status: Literal["met", "missed", "undecided"] = "undecided"
    overshoots: int
    requests: int
    required_requests: int
    confidence: float = 0.99

    @model_validator(mode="before")
    @classmethod
    def _status_of_older_records(cls, data: Any) -> Any:
        if isinstance(data, dict) and "status" not in data and data.get("met"):
            return {**data, "status": "met"}
        return data


class Interval(StrictModel):
    """A confidence interval around one figure, and how it was obtained."""

    low: float
    high: float
    confidence: float = 0.95
    method: str = Field(description="how it was computed, e.g. batch means over the point's 2 s batches")
    between_run_rel_sd: float | None = Field(
        None,
        description="this machine's between-run relative SD folded in (deploybench load --repeat); "
        "None: the point's own seconds only, so points taken at different times compare only paired",
    )

    @property
    def between_run(self) -> bool:
        """It carries the between-run term measured on this machine: fit to compare unpaired points."""
        return self.between_run_rel_sd is not None


def with_interval(
    value: float | None, interval: Interval | None, spec: str = ",.1f", missing: str = "—"
) -> str:
    """'123.4 (120.1–126.0)': a figure and its interval, the one way every output writes it."""
    if value is None:
        return missing
    if interval is None:
        return f"{value:{spec}}"
    return f"{value:{spec}} ({interval.low:{spec}}–{interval.high:{spec}})"


class RequestAccounting(StrictModel):
    """Every request a point issued, warm-up and the wait for late replies included.

    issued == completed + errors + timed_out: nothing in flight is ever dropped.
    """

    issued: int
    completed: int
    errors: int = Field(description="failed replies and refused sends, timeouts excluded")
    timed_out: int = Field(description="no reply within the request timeout")


class ClientLoad(StrictModel):
    """What the load generator itself did during a point: the evidence for its client-bound verdict."""

    sends: int = Field(0, description="requests started inside the point's windows")
    late_sends: int = Field(0, description="of those, started more than 1 ms after their schedule")
    cpu_ms_per_request: float | None = Field(None, description="load workers' CPU time per request")
    cpu_pct_of_machine: float | None = Field(None, description="load workers' CPU, % of all logical cores")
    busiest_worker_pct: float | None = Field(None, description="busiest worker, % of one core")
    cores: int | None = None
    send_lateness: LatencyStats | None = Field(None, description="open loop: actual send - scheduled send")
    send_lateness_histogram: str | None = None
    send_gap: LatencyStats | None = Field(None, description="closed loop: reply -> next send on that user")
    controller_cpu_pct: float | None = Field(
        None, description="the process running the point (study or CLI: meter, display), % of the machine"
    )


class LoadPoint(StrictModel):
    """One measured operating point: a fixed concurrency (closed loop) or rate (open loop).

    ok, errors, latency and histogram hold every reply of the measured windows plus the replies that
    were still in flight when measuring stopped (tail_ok of them successful): the slowest replies of
    an overloaded server are never cut off. throughput_rps counts the windows' own replies only.
    A point is trusted (a peak, an operating point) only when `flags` is empty; each flag says why
    with a number.
    """

    mode: Literal["closed", "open", "inprocess"]
    concurrency: int | None = None
    target_rate: float | None = None
    arrival: Literal["constant", "poisson", "intervals"] | None = Field(
        None,
        description="open loop: how sends were spaced (None: closed loop, or an open-loop point recorded "
        "before this was kept, which was evenly spaced)",
    )
    duration_s: float
    ok: int
    errors: dict[str, int] = Field(default_factory=dict)
    throughput_rps: float
    latency: LatencyStats
    stable: bool
    windows: int
    client_bound: bool = False
    client_cpu_pct: float | None = None
    late_send_fraction: float | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    server_timing_ms: dict[str, float] = Field(default_factory=dict)
    histogram: str | None = Field(None, description="HdrHistogram base64 encoding, microseconds")
    slo: SloVerdict | None = None
    tail_ok: int = Field(0, description="successful replies that arrived after measuring stopped")
    accounting: RequestAccounting | None = None
    client: ClientLoad | None = None
    throughput_ci: Interval | None = None
    p99_ci: Interval | None = None
    p99_estimate_ms: float | None = Field(
        None, description="MLPerf LoadGen's early-stopping p99 estimate at 99% confidence (None: too few)"
    )
    invalid_reason: str | None = Field(None, description="the measurement broke (e.g. a load worker died)")
    flags: list[str] = Field(default_factory=list, description="why the point is not trusted, with numbers")

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def trusted(self) -> bool:
        """Valid, stable, not client-bound: fit to be a peak or an operating point."""
        return not self.flags and self.stable and not self.client_bound and self.invalid_reason is None


DEFAULT_STACK = "deploybench"
BASELINE_BACKEND = "eager"


class Candidate(StrictModel):
    """One deployment candidate: a backend, the serving stack in front of it, and the knobs it is served with.

    The knobs are canonical (delays in ms); each stack maps them to its own names and units.
    """

    backend: str
    stack: str = DEFAULT_STACK
    device: str = "cpu"
    workers: int = 1
    threads: int = 1
    max_batch_size: int = 1
    max_delay_ms: float = 0.0
    runtime: RuntimeKnobs = Field(default_factory=RuntimeKnobs)

    @model_validator(mode="after")
    def _streams_fit(self) -> Candidate:
        check_streams(self.threads, self.runtime)
        return self

    @property
    def key(self) -> str:
        """Stable identifier; a study resumes by skipping keys it already recorded.

        deploybench's own server keeps the bare key (older studies resume); other stacks prefix theirs.
        Runtime knobs at their defaults add nothing, so keys of default candidates never change;
        others add e.g. `/s2-ovl` (RuntimeKnobs.key_suffix).
        """
        key = (
            f"{self.backend}@{self.device}/w{self.workers}t{self.threads}"
            f"/b{self.max_batch_size}d{self.max_delay_ms:g}"
        )
        suffix = self.runtime.key_suffix
        key = f"{key}/{suffix}" if suffix else key
        return key if self.stack == DEFAULT_STACK else f"{self.stack}:{key}"


class ParityReport(StrictModel):
    """How a variant's outputs compare with eager fp32 on fresh inputs (see backends/parity.py)."""

    verdict: Literal["passed", "rejected", "reference"]
    precision: str
    inputs: int = 0
    batch_sizes: list[int] = Field(default_factory=list, description="every batch size verified")
    top1_agreement: float | None = None
    top5_overlap: float | None = None
    cosine_min: float | None = Field(None, description="worst input's input-dependent cosine")
    cosine_p10: float | None = Field(None, description="10th percentile of the input-dependent cosine")
    max_abs_err: float | None = Field(None, description="largest logit error; reported, not gated")
    max_rel_err: float | None = Field(
        None, description="largest logit error (row mean error removed) over that input's logit range; gated"
    )
    input_variation: float | None = Field(
        None, description="fraction of the reference's logit variance that differs between inputs"
    )
    batch_consistency: float | None = Field(
        None, description="worst input's cosine between its outputs at different batch sizes (1: identical)"
    )
    reason: str | None = None
    notes: list[str] = Field(default_factory=list)
    through_handler: str | None = Field(
        None,
        description="a SageMaker handler's answers with this variant inside against the same with the "
        "original network, on the sample requests (the form must match; numbers as the limits above)",
    )
    model: str | None = Field(None, description="the network measured, when not the study's own model")
    judged_on: str | None = Field(
        None, description="set when the backend's numerics were judged on a trained stand-in, not this model"
    )
    stand_in: ParityReport | None = Field(
        None, description="the same backend built for the trained stand-in, gated with the trained limits"
    )
    seconds: float | None = Field(None, description="wall time of this check (a stand-in's: with its build)")
    build_seconds: float | None = Field(None, description="a stand-in's build time (small when cached)")

    @property
    def label(self) -> str:
        """The verdict as every table shows it: 'passed (judged on the trained stand-in ...)' where so."""
        return f"{self.verdict} (judged on {self.judged_on})" if self.judged_on else self.verdict


class AccuracyReport(StrictModel):
    """Labelled accuracy of one variant and, for all but the reference, its top-1 drop against eager.

    drop_pp > 0 means the variant gets fewer images right. The interval is a 95% confidence interval
    for paired proportions (Newcombe); p_value is McNemar's exact test on the disagreements.
    """

    n: int
    top1: float
    top5: float
    data: str = Field("", description="what the images were and where they came from")
    reference_top1: float | None = None
    reference_top5: float | None = None
    drop_pp: float | None = Field(None, description="eager top-1 minus this top-1, percentage points")
    drop_low_pp: float | None = None
    drop_high_pp: float | None = None
    only_reference_right: int | None = Field(None, description="images eager got right and this one wrong")
    only_variant_right: int | None = None
    p_value: float | None = Field(None, description="McNemar's exact test, two-sided")
    significant: bool | None = Field(None, description="p_value < 0.05")
    summary: str = ""


class MachineInfo(StrictModel):
    """The machine a trial ran on and what it costs; recorded with every trial."""

    label: str
    instance: str | None = None
    price_per_hour: float | None = None
    cpu_model: str | None = None
    cores: int | None = None
    gpu: str | None = None
    cpu_vendor: str | None = Field(None, description="intel | amd | aws | ... as detected")
    cpu_family: str | None = Field(None, description="microarchitecture, e.g. milan, sapphire-rapids")
    memory_gib: float | None = None
    price_source: str | None = Field(None, description="where the price came from, one line")
    warnings: list[str] = Field(default_factory=list, description="e.g. instance vs detected CPU mismatch")
    node_id: str | None = Field(None, description="the Ray node a cluster trial ran on")
    node_address: str | None = Field(None, description="that node's address on the cluster network")
    hostname: str | None = None


class StackRecord(StrictModel):
    """How the serving stack ran a trial: protocol measured, knobs in its own terms, what it reported."""

    name: str
    protocol: str = Field(description="what the load generator spoke, e.g. sagemaker-http, kserve-v2")
    settings: dict[str, Any] = Field(default_factory=dict, description="the stack's own knob names/units")
    reported: dict[str, Any] = Field(
        default_factory=dict, description="what the stack said about itself (workers, batch sizes formed)"
    )


class RunoffSample(StrictModel):
    """A candidate's throughput in each round of a paired runoff (study/runoff.py): every contender's
    server up at once, one short window each per round, in turn. Two samples of one group compare
    window by window, seconds apart, so the host's drift cancels in their ratio."""

    group: str = Field(description="the runoff: only samples of one group are compared")
    concurrency: int = Field(ge=1)
    window_s: float = Field(gt=0)
    rps: list[float] = Field(description="throughput of each round's window, in round order")


def is_baseline_candidate(candidate: Candidate) -> bool:
    """Eager on deploybench's server at default knobs (one worker, no batching, default runtime
    knobs): the baseline every speed-up is measured against, in the search and the recommendation."""
    default_knobs = (
        candidate.workers == 1 and candidate.max_batch_size == 1 and candidate.runtime == RuntimeKnobs()
    )
    return candidate.stack == DEFAULT_STACK and candidate.backend == BASELINE_BACKEND and default_knobs


class TrialRecord(StrictModel):
    """One line of trials.jsonl: a candidate built, verified, served and load-tested."""

    schema_version: int = SCHEMA_VERSION
    trial_id: str
    model: str
    weights: str = Field(description="pretrained | random | file:<path>; shown in every output")
    candidate: Candidate
    status: Literal["ok", "failed", "rejected", "skipped", "probe"]
    reason: str | None = Field(
        None, description="why failed/rejected/skipped, one line; probe: a search round (never ranked)"
    )
    precision: str | None = None
    parity: ParityReport | None = None
    accuracy: AccuracyReport | None = None
    points: list[LoadPoint] = Field(default_factory=list)
    peak_index: int | None = None
    c16_index: int | None = None
    slo_rate_index: int | None = None
    peak_rss_mb: float | None = None
    server_cpu_pct: float | None = None
    startup_s: float | None = Field(
        None,
        description="the stack's process start to its first successful readiness answer (a cold start on "
        "this machine, model load included; instance provisioning is not in it)",
    )
    stack: StackRecord | None = None
    front_cpu_pct: float | None = Field(
        None, description="the stack's root process alone, deploybench's HTTP front (100 = one core)"
    )
    machine: MachineInfo
    started_at: str
    finished_at: str
    log_tail: str | None = None
    runoff: RunoffSample | None = Field(
        None, description="its paired runoff (search round 2), compared window by window with the others'"
    )
    retryable: bool = Field(
        False,
        description="failed, but lost to the infrastructure (a node died, a process was killed from "
        "outside, the load generator broke), not by the candidate's own doing: a resumed study measures "
        "it again and appends the new record, which replaces this one (latest_trials)",
    )

    @property
    def peak(self) -> LoadPoint | None:
        return self.points[self.peak_index] if self.peak_index is not None else None

    @property
    def at_c16(self) -> LoadPoint | None:
        return self.points[self.c16_index] if self.c16_index is not None else None


def latest_trials(trials: list[TrialRecord]) -> list[TrialRecord]:
    """One record per trial id, the last appended: trials.jsonl is append-only, so a trial lost to the
    infrastructure (retryable) and measured again on resume has two lines, and the newer one is the
    trial's. In the order the ids were first recorded, so a resumed folder reads in its original order."""
    latest = {trial.trial_id: trial for trial in trials}
    return list(latest.values())


def candidate_trials(trials: list[TrialRecord]) -> list[TrialRecord]:
    """The candidates' own records: a search round's (status probe, KEY#probe) is the search's
    evidence, kept in trials.jsonl so a resumed study re-probes nothing, but never ranked or listed."""
    return [trial for trial in trials if trial.status != "probe"]
