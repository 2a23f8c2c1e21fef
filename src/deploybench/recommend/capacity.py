"""A candidate's fleet for the user's traffic, from its own measurements: the rate one instance
sustains within the p99 bound, the fleet hour by hour, the monthly bill and the simulated check.

Rules, and why:
- The rate per instance is the highest open-loop arrival rate whose early-stopping verdict met the
  p99 bound in every run of it, below the lowest rate any run of which missed (the study's rate
  search, run when the study had `--p99-ms`, confirms the rate it finds with more runs: load.sweeps),
  by the rate search's own rule: a valid point's verdict stands even where the point is flagged unstable or
  client-bound, since its latency runs from the schedule (a late send only adds to it) and the
  verdict covers every request it sent; the plan names the flags. Its interval runs from
  that rate to the lowest measured rate above it, which did not meet the bound, so the instance's
  true limit lies between. Arrival rate, not throughput: traffic arrives whether or not the
  server keeps up, which is what an open loop measures and a closed loop hides.
- Without those open-loop points the rate is PREDICTED, not measured, and the plan says so: a
  closed loop never queues more than its clients, so its throughput at a p99 that met the bound is
  no rate Poisson arrivals sustain (measured: docs/measurements.md, "Traffic plan check"). The
  closed-loop operating point's throughput is capped at the highest arrival rate whose p99 an
  M/G/c queue predicts within the bound (deploybench.traffic.queueing), built from the candidate's
  own points: service times as measured at its lowest concurrency, c = floor(saturated throughput x
  mean service time). The simulated check then uses that model's latencies too.
- With no p99 bound there is nothing to meet: the rate is the saturated closed-loop peak, where p99
  is unbounded, and the plan says that its fleet and bill meet no latency target.
- Only an open-loop verdict verifies a rate (`verified`); ranked by the bill, verified plans come
  before the others, whatever their bills, and each plan names what would verify it (`verify_with`:
  `deploybench check-plan` measures one plan; `deploybench run --p99-ms` reruns the rate search).
- Arrivals: the rate search runs Poisson arrivals (as real traffic and MLPerf LoadGen's Server
  scenario). Points recorded before it did were evenly spaced, and evenly spaced sends never queue
  behind a burst: at the same rate Poisson arrivals have the higher p99. A plan standing on such
  points keeps a stated margin, EVEN_ARRIVALS_UTILISATION of the rate, assumed and not measured,
  until a rerun study or `deploybench check-plan` measures the rate under Poisson arrivals.
- Curve utilisation: the verdict holds for this run; the point's p99 interval (with the between-run
  term measured on this machine) says how far a rerun may land. Where the interval's top at that
  rate is over the bound, the planned maximum is where the measured curve of interval tops crosses
  it (linear between measured rates). The lag utilisation (deploybench.traffic.fleet) comes on top.
- Drift utilisation: the rate search found the limit in a few runs back to back; a slower hour of
  the same machine finds it lower, and near it p99 climbs steeply. So the plan keeps
  1 / (1 + z x rel SD), z the one-sided 95% normal quantile, the SD this machine's between-run
  throughput spread as the point's interval recorded it, else the prior (stated as not measured).
  With no bound there is no claim, no margin.
- rate_per_instance, what the plan stands on and `deploybench check-plan` offers: the rate found
  (rate_interval's low end) x the curve, arrival and drift utilisations.
- Bills: autoscaled = sum of the hourly instances x USD per hour x (730 h / hours in the profile);
  fixed = the fixed fleet x USD per hour x 730 h; cost per 1M at this traffic = the autoscaled bill
  over the month's requests (mean rate x 3600 x 730 / 1e6). Each recomputes from the JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from deploybench.config import StrictModel
from deploybench.load.noise import PRIOR_REL_SD
from deploybench.load.stats import counts_of, value_at_percentiles
from deploybench.pricing.catalogue import HOURS_PER_MONTH
from deploybench.recommend.rate import (
    QueuePrediction,
    RateFinding,
    RateSource,
    find_rate,
    open_points,
    service_times,
    verify_commands,
)
from deploybench.results import Candidate, LoadPoint, TrialRecord
from deploybench.traffic.fleet import FleetPlan, FleetSettings, plan_fleet, traffic_curve
from deploybench.traffic.profile import TrafficProfile
from deploybench.traffic.queueing import predicted_quantiles_ms
from deploybench.traffic.simulate import QUANTILES, Autoscaler, ServiceCurve, SimulatedHour, simulate_fleet

SECONDS_PER_MONTH = 3600 * HOURS_PER_MONTH
EVEN_ARRIVALS_UTILISATION = 0.8  # assumed: evenly spaced points' rate, planned at 80% (module rules)
DRIFT_Z = 1.645  # one-sided 95% normal quantile: the drift margin (module rules)
PREDICTED_POINTS = 8  # rates the queueing model is simulated at for a predicted plan's check


class TrafficPlan(StrictModel):
    """One candidate's fleet for the traffic: the figures, how each was found, and the bill."""

    candidate: Candidate
    label: str
    machine: str
    basis: str = Field(description="how rate_per_instance was found, in words")
    rate_source: RateSource = Field(
        description="open-loop verdict (measured), queueing prediction (no open-loop point met the "
        "bound: predicted, not measured) or no bound (saturated peak: meets no latency target)",
    )
    verified: bool = Field(
        description="rate_per_instance met the bound under open-loop arrivals; ranked first by bill"
    )
    verify_with: list[str] = Field(
        default_factory=list, description="commands that would measure what this plan assumes"
    )
    prediction: QueuePrediction | None = Field(
        None, description="the queueing model behind a predicted rate: its inputs and its p99"
    )
    rate_per_instance: float = Field(
        description="the most one instance is planned to take within the bound: the rate found "
        "(rate_interval's low end) x curve x arrival x drift utilisation (the module's rules)"
    )
    rate_interval: tuple[float, float | None] = Field(
        description="the instance's limit lies between: the rate met and the lowest measured above it not met"
    )
    curve_utilisation: float = Field(description="share of that rate the p99 interval at it leaves (1: all)")
    arrival_utilisation: float = Field(
        1.0, description="1 for Poisson rate-search points; the stated margin for evenly spaced ones"
    )
    drift_utilisation: float = Field(
        1.0, description="1 / (1 + 1.645 x the between-run throughput SD): a slower run still meets it"
    )
    drift_rel_sd: float | None = Field(
        None, description="the between-run relative SD it comes from (None: no bound, no margin)"
    )
    lag_utilisation: float
    target_utilisation: float = Field(
        description="curve x arrival x drift x lag: the share of the rate found the autoscaler targets"
    )
    target_rps_per_instance: float
    mean_latency_ms: float = Field(description="mean latency at the rate the plan stands on")
    cold_start_s: float
    cold_start_source: str = Field(description="measured on this machine, or assumed (and why)")
    reaction_s: float = Field(
        description="assumed: a rise in traffic to the autoscaler's decision (--reaction-s)"
    )
    provision_s: float = Field(
        description="assumed: a new instance's boot before its server starts (--provision-s)"
    )
    lag_s: float = Field(description="reaction + provisioning + cold start: a rise to new capacity serving")
    peak_rss_mb: float | None = None
    instances_per_hour: list[int]
    fixed_instances: int
    usd_per_hour: float | None
    hours_per_month: int = HOURS_PER_MONTH
    requests_per_month: float
    monthly_usd_autoscaled: float | None
    monthly_usd_fixed: float | None
    usd_per_1m_at_traffic: float | None
    simulation: list[SimulatedHour] | None = None
    notes: list[str] = Field(default_factory=list)

    @property
    def simulated_p99_ms(self) -> float | None:
        values = [h.p99_ms for h in self.simulation or [] if h.p99_ms is not None]
        return max(values) if values else None


def curve_utilisation(
    trial: TrialRecord, finding: RateFinding, p99_ms: float | None
) -> tuple[float, str | None]:
    """Share of the found rate the p99 intervals leave under the bound, with a note when below 1."""
    if p99_ms is None or not finding.open_loop:
        return 1.0, None
    curve = [
        (float(p.target_rate or 0.0), p.p99_ci.high if p.p99_ci else p.latency.p99_ms)
        for p in open_points(trial, p99_ms)
        if (p.target_rate or 0.0) <= finding.rate
    ]
    if curve[-1][1] <= p99_ms:
        return 1.0, None
    under = [i for i, (_, top) in enumerate(curve) if top <= p99_ms]
    if not under:
        note = (
            "the p99 interval reaches over the bound at every rate measured: only the verdict backs the rate"
        )
        return 1.0, note
    (r0, t0), (r1, t1) = curve[under[-1]], curve[under[-1] + 1]
    crossing = r0 + (r1 - r0) * (p99_ms - t0) / (t1 - t0)
    note = (
        f"the p99 interval at {finding.rate:.1f} req/s reaches {curve[-1][1]:.1f} ms, over the bound: "
        f"planned at most {crossing:.1f} req/s, where the measured interval tops cross {p99_ms:g} ms"
    )
    return crossing / finding.rate, note


def flag_note(finding: RateFinding) -> str | None:
    """Name the flags of the point the rate stands on (its verdict stands: see the module's rules)."""
    if not finding.open_loop or not finding.point.flags:
        return None
    return (
        f"the rate-search point at {finding.rate:.1f} req/s is flagged ({'; '.join(finding.point.flags)}); "
        "its p99 verdict stands, timed from the schedule over every request it sent"
    )


def arrival_utilisation(finding: RateFinding) -> tuple[float, str | None]:
    """The stated margin for a rate found under evenly spaced arrivals (see the module's rules)."""
    if not finding.open_loop or finding.point.arrival == "poisson":
        return 1.0, None
    note = (
        f"the rate search ran evenly spaced arrivals; Poisson arrivals at the same rate queue more, so "
        f"the plan takes {EVEN_ARRIVALS_UTILISATION:.0%} of {finding.rate:.1f} req/s (an assumed margin: "
        "rerun the study, whose rate search now runs Poisson arrivals, or measure it with "
        "`deploybench check-plan`)"
    )
    return EVEN_ARRIVALS_UTILISATION, note


def drift_utilisation(finding: RateFinding, p99_ms: float | None) -> tuple[float, float | None, str | None]:
    """The margin for this machine's between-run drift (see the module's rules), its SD and a note."""
    if p99_ms is None:
        return 1.0, None, None
    interval = finding.point.throughput_ci
    measured = interval.between_run_rel_sd if interval is not None else None
    rel_sd = measured if measured is not None else PRIOR_REL_SD
    share = 1.0 / (1.0 + DRIFT_Z * rel_sd)
    source = (
        "measured on this machine" if measured is not None else "the between-run prior, not measured here"
    )
    note = (
        f"planned at {share:.0%} of {finding.rate:.1f} req/s for this machine's between-run drift "
        f"(throughput SD {rel_sd:.1%}, {source}; one-sided 95%): the limit was measured within "
        "minutes, and a slower run of the same machine must still meet the bound"
    )
    return share, rel_sd, note


def predicted_curve(trial: TrialRecord, planned_rps: float) -> ServiceCurve | None:
    """The queueing model's latency distribution at PREDICTED_POINTS rates up to 95% of its
    capacity, and at the planned rate (so the conservative neighbour of a rate within the plan is
    never a rate beyond it): what a predicted plan is simulated with (predicted, not measured)."""
    found = service_times(trial)
    if found is None:
        return None
    service = found[0]
    grid = np.arange(1, PREDICTED_POINTS + 1) / PREDICTED_POINTS * 0.95 * service.capacity_rps
    rates = np.unique(np.append(grid, planned_rps))
    rows = np.array([predicted_quantiles_ms(float(r), service) for r in rates])
    return ServiceCurve(rates, np.maximum.accumulate(rows, axis=1), service.capacity_rps)


def service_curve(
    trial: TrialRecord, fallback: LoadPoint, predicted_rps: float | None = None
) -> tuple[ServiceCurve, str | None]:
    """The latency distribution at each measured per-instance rate: open-loop points, else (a
    predicted plan) the queueing model's, else the closed loop's (their throughput as the rate),
    labelled."""
    points = [p for p in open_points(trial) if p.histogram]
    note = None
    rates = [float(p.target_rate or 0.0) for p in points]
    curve = predicted_curve(trial, predicted_rps) if predicted_rps and not points else None
    if curve is not None:
        return (
            curve,
            "simulated with the queueing model's latencies: predicted, not measured (none open-loop)",
        )
    if not points:
        points = sorted(
            (p for p in trial.points if p.histogram and p.ok and p.invalid_reason is None),
            key=lambda p: p.throughput_rps,
        ) or [fallback]
        rates = [p.throughput_rps for p in points]
        note = "simulated with closed-loop points standing in for the latency-vs-rate curve (none open-loop)"
    rows = (
        np.array([value_at_percentiles(counts_of(p.histogram), list(QUANTILES * 100)) for p in points]) / 1000
    )
    rows = np.maximum.accumulate(rows, axis=1)
    capacity = max(p.throughput_rps for p in [*trial.points, *points] if p.invalid_reason is None)
    return ServiceCurve(np.asarray(rates), rows, capacity), note


def cold_start(trial: TrialRecord, settings: FleetSettings) -> tuple[float, str]:
    if settings.cold_start_s is not None:
        return settings.cold_start_s, "given"
    if trial.startup_s is not None:
        return (
            trial.startup_s,
            "measured on this machine: the server's process start to its first ready answer",
        )
    return settings.assumed_cold_start_s, "assumed: this study did not record the server's start-up"


def bills(fleet: FleetPlan, profile: TrafficProfile, usd_per_hour: float | None) -> dict[str, float | None]:
    """The monthly bills and the cost per 1M at this traffic (see the module's rules)."""
    requests = profile.mean_rps * SECONDS_PER_MONTH
    if usd_per_hour is None:
        return {"requests_per_month": requests, "monthly_usd_autoscaled": None, "monthly_usd_fixed": None,
                "usd_per_1m_at_traffic": None}  # fmt: skip
    hours = len(fleet.instances_per_hour)
    autoscaled = sum(fleet.instances_per_hour) * usd_per_hour * HOURS_PER_MONTH / hours
    return {
        "requests_per_month": requests,
        "monthly_usd_autoscaled": autoscaled,
        "monthly_usd_fixed": fleet.fixed_instances * usd_per_hour * HOURS_PER_MONTH,
        "usd_per_1m_at_traffic": autoscaled / (requests / 1e6),
    }


def rate_fields(
    finding: RateFinding, profile: TrafficProfile, p99_ms: float | None, trial_id: str
) -> dict[str, object]:
    """How the rate was found and what would verify it (see the module's rules)."""
    return {
        "basis": finding.basis,
        "rate_source": finding.source,
        "verified": finding.open_loop,
        "verify_with": verify_commands(trial_id, profile, p99_ms, finding.open_loop),
        "prediction": finding.prediction,
    }


@dataclass(frozen=True)
class PlanInputs:
    trial: TrialRecord
    label: str
    machine: str
    point: LoadPoint | None  # the operating point the ranking judged it at
    usd_per_hour: float | None


def plan_candidate(
    inputs: PlanInputs, profile: TrafficProfile, p99_ms: float | None, settings: FleetSettings
) -> TrafficPlan | None:
    """The fleet for this traffic, or None when nothing measured gives a rate."""
    trial = inputs.trial
    finding = find_rate(trial, inputs.point, p99_ms)
    if finding is None or finding.rate <= 0:
        return None
    utilisation, note = curve_utilisation(trial, finding, p99_ms)
    arrivals, arrival_note = arrival_utilisation(finding)
    drift, drift_sd, drift_note = drift_utilisation(finding, p99_ms)
    planned = finding.rate * utilisation * arrivals * drift
    cold, source = cold_start(trial, settings)
    lag = settings.reaction_s + settings.provision_s + cold
    fleet = plan_fleet(profile, planned, lag, settings)
    return TrafficPlan(
        candidate=trial.candidate,
        label=inputs.label,
        machine=inputs.machine,
        **rate_fields(finding, profile, p99_ms, trial.trial_id),
        rate_per_instance=planned,
        rate_interval=(finding.rate, finding.high),
        curve_utilisation=utilisation,
        arrival_utilisation=arrivals,
        drift_utilisation=drift,
        drift_rel_sd=drift_sd,
        lag_utilisation=fleet.lag_utilisation,
        target_utilisation=utilisation * arrivals * drift * fleet.lag_utilisation,
        target_rps_per_instance=fleet.target_rps_per_instance,
        mean_latency_ms=finding.point.latency.mean_ms,
        cold_start_s=cold,
        cold_start_source=source,
        reaction_s=settings.reaction_s,
        provision_s=settings.provision_s,
        lag_s=lag,
        peak_rss_mb=trial.peak_rss_mb,
        instances_per_hour=fleet.instances_per_hour,
        fixed_instances=fleet.fixed_instances,
        usd_per_hour=inputs.usd_per_hour,
        notes=[n for n in (note, arrival_note, drift_note, flag_note(finding)) if n],
        **bills(fleet, profile, inputs.usd_per_hour),
    )


def closest_miss(trials: Sequence[TrialRecord], labels: dict[str, str], p99_ms: float) -> str:
    """No candidate meets the bound: which came closest (lowest p99 at any answered point), by how much."""
    best: tuple[float, str, LoadPoint] | None = None
    for trial in trials:
        for point in trial.points:
            if point.ok and point.invalid_reason is None and (best is None or point.latency.p99_ms < best[0]):
                best = (point.latency.p99_ms, labels.get(trial.trial_id, trial.trial_id), point)
    if best is None:
        return f"no candidate meets p99 <= {p99_ms:g} ms, and none was measured answering at all"
    p99, label, point = best
    where = f"{point.target_rate:g} req/s offered" if point.mode == "open" else f"{point.concurrency} clients"
    over = 100 * (p99 / p99_ms - 1)
    gap = (
        f"{over:.0f}% over the bound" if over > 0 else "within the bound raw, but no verdict could confirm it"
    )
    return (
        f"no candidate meets p99 <= {p99_ms:g} ms; closest: {label}, p99 {p99:.1f} ms at {where} "
        f"({point.throughput_rps:.1f} req/s), {gap}"
    )


def simulate_plan(
    plan: TrafficPlan,
    trial: TrialRecord,
    profile: TrafficProfile,
    p99_ms: float | None,
    settings: FleetSettings,
) -> TrafficPlan:
    """The plan with its second-by-second simulation attached (seeded: the same plan, the same days)."""
    predicted = plan.rate_per_instance if plan.rate_source == "queueing prediction" else None
    service, note = service_curve(trial, trial.peak or trial.points[0], predicted)
    scaler = Autoscaler(
        target_rps=plan.target_rps_per_instance,
        min_instances=settings.min_instances,
        max_instances=max(plan.instances_per_hour),
        period_s=max(1, round(settings.metric_period_s)),
        reaction_s=settings.reaction_s,
        launch_s=settings.provision_s + plan.cold_start_s,
        scale_in_s=settings.scale_in_s,
        queue_per_instance=settings.queue_per_instance,
    )
    per_second = traffic_curve(profile, 1.0)
    hours = simulate_fleet(per_second, service, scaler, p99_ms if p99_ms is not None else float("inf"))
    return plan.model_copy(update={"simulation": hours, "notes": [*plan.notes, *([note] if note else [])]})
