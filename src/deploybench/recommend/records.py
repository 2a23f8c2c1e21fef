"""Records of a recommendation: each trial judged at its operating point, and the ranked outcome.

Plain data (pydantic) so the report, the CLI's --json and the study all share one shape.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from deploybench.config import Constraints, StrictModel, is_random_weights
from deploybench.pricing.catalogue import CapacityPlan, cost_per_million
from deploybench.recommend.capacity import TrafficPlan
from deploybench.results import AccuracyReport, Interval, RunoffSample, TrialRecord, with_interval
from deploybench.traffic.fleet import FleetSettings
from deploybench.traffic.profile import TrafficProfile


class Evaluation(StrictModel):
    """One trial judged at its operating point, with its rank and the reason it won or lost."""

    trial_id: str
    trial_index: int = Field(0, description="position of the trial in the list given to recommend()")
    key: str
    label: str
    machine: str
    model: str
    weights: str
    backend: str
    stack: str = "deploybench"
    protocol: str | None = None
    precision: str
    device: str
    workers: int
    threads: int
    max_batch_size: int
    max_delay_ms: float
    status: str
    eligible: bool
    reason: str
    usd_per_hour: float | None = None
    price_source: str | None = None
    peak_rss_mb: float | None = None
    server_cpu_pct: float | None = None
    runoff: RunoffSample | None = Field(
        None, description="its paired runoff, when ranked on throughput or cost with no p99 bound"
    )
    peak_throughput_rps: float | None = None
    peak_p99_ms: float | None = None
    point_index: int | None = None
    client_bound: bool = Field(False, description="never True for an operating point (kept for old readers)")
    concurrency: int | None = None
    target_rate: float | None = None
    throughput_rps: float | None = None
    throughput_ci: Interval | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    p99_ci: Interval | None = None
    transactions_per_hour: float | None = None
    cost_per_1m: float | None = None
    cost_per_1m_ci: Interval | None = None
    rank: int | None = None
    pareto: bool = False
    baseline_key: str | None = None
    throughput_x: float | None = None
    throughput_x_ci: Interval | None = Field(None, description="95% interval of throughput_x, where paired")
    throughput_x_paired: int = Field(0, description="rounds of the runoff throughput_x is from; 0: points")
    p99_change_pct: float | None = None
    c16_p99_ms: float | None = Field(None, description="p99 at 16 clients: the load a p99 change compares at")
    p99_change_at_c16: bool = Field(False, description="p99_change_pct compares the two at 16 clients")
    cost_change_pct: float | None = None
    cost_vs_winner: float | None = Field(None, description="cost per 1M / the recommended one's (5.4 = 5.4x)")
    capacity: CapacityPlan | None = None
    traffic_plan: TrafficPlan | None = Field(None, description="its fleet and monthly bill for --traffic")
    accuracy_drop_pp: float | None = Field(None, description="labelled top-1 lost against eager, pp")
    search_rps: float | None = Field(
        None, description="a candidate the search dropped: its figure in the last round it ran"
    )
    search_ci: Interval | None = Field(None, description="that round's 95% interval (none for a runoff)")
    search_round: str | None = Field(None, description="which round: probe, or round 2 (paired runoff)")
    accuracy_change: str | None = Field(
        None, description="the measured top-1 change against eager fp32 in words, with its interval and data"
    )

    @property
    def is_default_eager(self) -> bool:
        """The baseline: eager fp32 on deploybench's server, default knobs (one worker, no batching)."""
        return (
            self.backend == "eager"
            and self.stack == "deploybench"
            and self.precision == "fp32"
            and self.workers == 1
            and self.max_batch_size == 1
            and self.status == "ok"
        )

    @property
    def ref_throughput_rps(self) -> float | None:
        """As a baseline: its operating point, or its peak when it has none under the constraints."""
        return self.throughput_rps or self.peak_throughput_rps

    @property
    def ref_p99_ms(self) -> float | None:
        return self.p99_ms if self.throughput_rps else self.peak_p99_ms

    @property
    def ref_cost_per_1m(self) -> float | None:
        thr = self.ref_throughput_rps
        return None if not thr or self.usd_per_hour is None else cost_per_million(self.usd_per_hour, thr)

    @property
    def vs_baseline(self) -> str | None:
        """'N.Nx throughput, -NN% p99, -NN% cost per 1M' against the eager baseline."""
        if self.throughput_x is None:
            return None
        parts = [f"{self.throughput_x:.1f}x throughput"]
        if self.throughput_x_ci is not None and self.throughput_x_paired:
            ci = self.throughput_x_ci
            clients = f" at {self.runoff.concurrency} clients" if self.runoff else ""
            parts[0] += f" ({ci.low:.1f}-{ci.high:.1f} in a paired runoff{clients})"
        if self.p99_change_pct is not None:
            parts.append(f"{self.p99_change_pct:+.0f}% p99" + " at 16 clients" * self.p99_change_at_c16)
        if self.cost_change_pct is not None:
            parts.append(f"{self.cost_change_pct:+.0f}% cost per 1M")
        return ", ".join(parts)


class Recommendation(StrictModel):
    """The ranked outcome of a study (or of several merged across machines)."""

    constraints: Constraints
    objective_used: str
    winner: Evaluation | None
    evaluations: list[Evaluation] = Field(description="eligible ones by rank, then the others")
    baseline_key: str | None = None
    notes: list[str] = Field(default_factory=list)
    weights: list[str] = Field(default_factory=list)
    machines: list[str] = Field(default_factory=list)
    target_rps: float | None = None
    headroom: float = 0.0
    comparison: str | None = Field(
        None, description="whether the winner beats the runner-up beyond the noise, or the tie rule chose"
    )
    tied_with: list[str] = Field(default_factory=list, description="keys statistically tied with the winner")
    runner_up: str | None = Field(
        None, description="the best other contender of the winner's paired runoff, with their paired ratio"
    )
    traffic: TrafficProfile | None = Field(None, description="the traffic planned for (--traffic)")
    fleet: FleetSettings | None = Field(None, description="the autoscaler and instances the plans assume")
    traffic_note: str | None = Field(
        None, description="with traffic and no plan: why, and the candidate closest to the bound"
    )

    @property
    def random_weights(self) -> bool:
        return any(is_random_weights(w) for w in self.weights)

    @property
    def traffic_line(self) -> str | None:
        """One line for --traffic: the winner's fleet and bills, or why there is none."""
        if self.traffic is None:
            return None
        plan = self.winner.traffic_plan if self.winner else None
        if plan is None:
            return f"Your traffic: {self.traffic_note or 'no plan'}"
        return traffic_words(self.traffic, plan)

    @property
    def headline(self) -> str:
        """One line: what to deploy and why, or why nothing can be recommended."""
        w = self.winner
        if w is None:
            return _nothing_message(self.evaluations)
        cost = f"${w.cost_per_1m:.2f} per 1M inferences, " if w.cost_per_1m is not None else ""
        where = f" on {w.machine}" if w.machine else ""
        vs = f" ({w.vs_baseline} vs eager baseline)" if w.vs_baseline and w.key != w.baseline_key else ""
        head = f"Recommended: {w.label}{where}: {cost}{w.throughput_rps:.1f} req/s, p99 {w.p99_ms:.1f} ms{vs}"
        return head + "".join(f"; {part}" for part in (_accuracy_clause(w), self.runner_up) if part)


def traffic_words(traffic: TrafficProfile, plan: TrafficPlan) -> str:
    """'Your traffic (...): N-M instances, $A a month autoscaled ($B fixed at peak), $C per 1M'."""
    low, high = min(plan.instances_per_hour), max(plan.instances_per_hour)
    fleet = f"{low}-{high} instances" if low != high else f"{low} instance{'s' * (low != 1)}"
    head = (
        f"Your traffic ({traffic.source}, peak {traffic.peak_rps:,.1f}, mean {traffic.mean_rps:,.1f} req/s): "
    )
    head += f"{plan.label}, {fleet} at {plan.target_rps_per_instance:.1f} req/s each{_unverified(plan)}"
    if plan.monthly_usd_autoscaled is None or plan.monthly_usd_fixed is None:
        return head + " (no price: no bill)"
    return (
        f"{head}: ${plan.monthly_usd_autoscaled:,.2f} a month autoscaled, ${plan.monthly_usd_fixed:,.2f} "
        f"fixed at peak ({plan.fixed_instances}), ${plan.usd_per_1m_at_traffic:.2f} per 1M at this traffic"
    )


def _unverified(plan: TrafficPlan) -> str:
    """A plan whose rate no open-loop verdict verified says so where its bill is given."""
    if plan.rate_source == "no bound":
        return (
            " (NO p99 BOUND: each instance at its saturated peak, latency unbounded; this bill meets no "
            "latency target: pass --p99-ms)"
        )
    if not plan.verified:
        check = f": verify with `{plan.verify_with[0]}`" if plan.verify_with else ""
        return f" (PREDICTED rate, not measured: no open-loop point met the bound{check})"
    return ""


def _accuracy_clause(winner: Evaluation) -> str | None:
    """A reduced precision is recommended with its measured accuracy change, or a warning that its
    accuracy is unmeasured: passing the parity gate is not the same as keeping top-1."""
    if winner.precision == "fp32":
        return None
    if winner.accuracy_change is not None:
        return f"accuracy {winner.accuracy_change}"
    return (
        f"WARNING: {winner.precision} accuracy not measured (it passed the parity gate only; "
        "measure it with --eval-data)"
    )


def _nothing_message(evaluations: Sequence[Evaluation]) -> str:
    if not evaluations:
        return "No candidate can be recommended: the study has no trials."
    counts: dict[str, int] = {}
    for ev in evaluations:
        kind = ev.reason.split(":")[0].split(" (")[0]
        counts[kind] = counts.get(kind, 0) + 1
    detail = "; ".join(f"{n} x {kind}" for kind, n in sorted(counts.items()))
    return f"No candidate can be recommended: none of the {len(evaluations)} trials qualifies ({detail})."


def trial_label(trial: TrialRecord) -> str:
    """backend, precision, device, layout (workers x threads), batching, runtime knobs and stack."""
    c = trial.candidate
    batch = f" b{c.max_batch_size}/{c.max_delay_ms:g}ms" if c.max_batch_size > 1 else ""
    device = "" if c.device == "cpu" else f" {c.device}"
    stack = "" if c.stack == "deploybench" else f" via {c.stack}"
    runtime = f" {c.runtime.key_suffix}" if c.runtime.key_suffix else ""  # e.g. s2-ovl: streams, overlap
    return f"{c.backend} {trial.precision or 'fp32'}{device} w{c.workers}t{c.threads}{batch}{runtime}{stack}"


def accuracy_words(accuracy: AccuracyReport | None) -> str | None:
    """The measured top-1 change against eager fp32, with its interval and data; None if unmeasured."""
    if accuracy is None or accuracy.drop_pp is None:
        return None
    low, high = accuracy.drop_low_pp, accuracy.drop_high_pp
    interval = "" if low is None or high is None else f", 95% CI {-high:+.1f} to {-low:+.1f}"
    data = f" on {accuracy.data}" if accuracy.data else ""
    return f"top-1 {-accuracy.drop_pp:+.1f} pp vs eager fp32 (n={accuracy.n}{interval}){data}"


def never_served(ev: Evaluation) -> bool:
    """Not served at all (pruned, unavailable, rejected by parity): nothing measured to show in a row."""
    unserved = ev.status in ("skipped", "rejected") and ev.search_rps is None
    return unserved and ev.peak_throughput_rps is None and ev.throughput_rps is None


def ranked_rows(rec: Recommendation) -> tuple[list[Evaluation], str | None]:
    """The ranking's rows (every candidate something was measured for, with its figure), and the
    candidates never served folded into one line with their reasons."""
    shown = [ev for ev in rec.evaluations if not never_served(ev)]
    folded = [f"{ev.label} ({ev.reason})" for ev in rec.evaluations if never_served(ev)]
    return shown, ("Never served: " + "; ".join(folded)) if folded else None


def throughput_text(ev: Evaluation) -> str:
    """The operating point's throughput, else (a candidate the search dropped) its last round's."""
    if ev.throughput_rps is None and ev.search_rps is not None:
        return f"{with_interval(ev.search_rps, ev.search_ci)} ({ev.search_round})"
    if ev.throughput_rps is None and ev.peak_throughput_rps is not None:
        return f"{ev.peak_throughput_rps:.1f} (its peak: no operating point)"
    return with_interval(ev.throughput_rps, ev.throughput_ci)
