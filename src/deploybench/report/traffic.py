"""The "Your traffic" part of every output: each ranked candidate's fleet for the traffic given,
hour by hour for the winner with its simulated check, the assumptions in one place, the JSON
`capacity` entries and the autoscaling policy files (written for the winner).

Every planned candidate's policy numbers are kept beside them (autoscaling/policy-numbers.json, by
trial id), so an export of any candidate, the winner or one picked by --trial-id, carries the
policies of the plan the last `report --traffic` made for it (write_candidate_policies). A report
without a plan removes what an earlier one wrote: a stale plan must not ship with an export.

One set of rows feeds the HTML, the Markdown and the JSON, so they cannot disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deploybench.recommend.bill import unverified_words
from deploybench.recommend.capacity import TrafficPlan
from deploybench.recommend.records import Recommendation
from deploybench.traffic.fleet import FleetSettings
from deploybench.traffic.policies import PolicyNumbers, policy_texts, write_policies

POLICY_FOLDER = "autoscaling"
POLICY_NUMBERS = "policy-numbers.json"
NO_LIMIT = {  # the rate's bracket has no measured miss above it: why, by the rate's source
    "open-loop verdict": " (no miss above)",
    "queueing prediction": " (predicted, not measured)",
    "no bound": " (saturated: no bound)",
}


def planned(rec: Recommendation) -> list[tuple[int | None, TrafficPlan]]:
    """(rank, plan) of every candidate with a fleet plan, in ranking order."""
    return [(ev.rank, ev.traffic_plan) for ev in rec.evaluations if ev.traffic_plan is not None]


def capacity_entries(rec: Recommendation) -> list[dict[str, Any]]:
    """The JSON `capacity` list: one entry per ranked candidate with a plan (its knobs as `candidate`)."""
    entries = []
    for rank, plan in planned(rec):
        data = plan.model_dump(mode="json")
        data["candidate"] = {**data["candidate"], "label": plan.label, "machine": plan.machine}
        entries.append({"rank": rank, **data, "simulated_p99_ms": plan.simulated_p99_ms})
    return entries


def _simulated(plan: TrafficPlan) -> dict[str, Any]:
    hours = plan.simulation or []
    return {
        "sim_p99_ms": plan.simulated_p99_ms,
        "sim_late": sum(h.late for h in hours) if hours else None,
        "sim_shed": sum(h.shed for h in hours) if hours else None,
        "sim_requests": sum(h.requests for h in hours) if hours else None,
    }


def plan_rows(rec: Recommendation) -> list[dict[str, Any]]:
    """One row per planned candidate: rate, utilisation, fleet, bills and the simulated check."""
    rows = []
    for rank, plan in planned(rec):
        low, high = plan.rate_interval
        rows.append(
            {
                "rank": rank,
                "candidate": plan.label,
                "rate": plan.rate_per_instance,
                "rate_text": f"{plan.rate_per_instance:.1f} of {low:.1f}"
                + (f" (limit < {high:.1f})" if high is not None else NO_LIMIT[plan.rate_source]),
                "target_utilisation": plan.target_utilisation,
                "target_rps": plan.target_rps_per_instance,
                "instances": f"{min(plan.instances_per_hour)}-{max(plan.instances_per_hour)}",
                "fixed_instances": plan.fixed_instances,
                "monthly_autoscaled": plan.monthly_usd_autoscaled,
                "monthly_fixed": plan.monthly_usd_fixed,
                "usd_per_1m": plan.usd_per_1m_at_traffic,
                "open_loop": plan.verified,
                "rate_source": plan.rate_source,
                "verify_with": plan.verify_with,
                **_simulated(plan),
            }
        )
    return rows


def unverified_lines(rec: Recommendation) -> list[str]:
    """One line per plan whose rate no open-loop verdict verified: what it stands on, what verifies it."""
    return [f"{plan.label}: {unverified_words(plan)}" for _, plan in planned(rec) if not plan.verified]


def hourly_rows(rec: Recommendation) -> list[dict[str, Any]]:
    """The winner's plan hour by hour: traffic, instances, cost, and the simulation's figures."""
    plan = rec.winner.traffic_plan if rec.winner else None
    if plan is None or rec.traffic is None:
        return []
    sim = {h.hour: h for h in plan.simulation or []}
    rows = []
    for hour, (rps, count) in enumerate(zip(rec.traffic.hourly_rates, plan.instances_per_hour, strict=True)):
        s = sim.get(hour)
        rows.append(
            {
                "hour": hour,
                "traffic_rps": rps,
                "instances": count,
                "capacity_rps": count * plan.target_rps_per_instance,
                "usd": None if plan.usd_per_hour is None else count * plan.usd_per_hour,
                "sim_p99_ms": s.p99_ms if s else None,
                "sim_instances_max": s.instances_max if s else None,
                "sim_late": s.late if s else None,
                "sim_shed": s.shed if s else None,
            }
        )
    return rows


def assumptions(rec: Recommendation) -> list[str]:
    """Every figure the plan did not measure, and how the measured ones were read, in one list."""
    fleet, plan = rec.fleet or FleetSettings(), rec.winner.traffic_plan if rec.winner else None
    lines = [
        f"Traffic: {rec.traffic.source if rec.traffic else '—'}; each step's rate is its level at the step's "
        "middle, linear between steps, the period repeating",
        f"Autoscaler reaction {fleet.reaction_s:g} s (assumed), instance provisioning "
        f"{fleet.provision_s:g} s (assumed), scale-in after {fleet.scale_in_s:g} s, metric every "
        f"{fleet.metric_period_s:g} s, minimum fleet {fleet.min_instances}",
        "Month: 730 hours; the autoscaled bill counts each hour at the most instances any moment of it needs",
    ]
    if plan is not None:
        lines += [
            f"Rate per instance: {plan.basis}",
            *[f"To verify it: `{command}`" for command in plan.verify_with],
            f"Cold start {plan.cold_start_s:.1f} s: {plan.cold_start_source}",
            f"Scale-out lag {plan.lag_s:.0f} s = reaction + provisioning + cold start; warm spares cover it: "
            f"target utilisation {plan.target_utilisation:.0%} = curve {plan.curve_utilisation:.0%} x "
            f"arrivals {plan.arrival_utilisation:.0%} x drift {plan.drift_utilisation:.0%} x lag "
            f"{plan.lag_utilisation:.0%}",
            *plan.notes,
        ]
    if rec.traffic_note:
        lines.append(rec.traffic_note)
    return lines + (rec.traffic.notes if rec.traffic else [])


def policy_numbers(plan: TrafficPlan, fleet: FleetSettings) -> PolicyNumbers:
    return PolicyNumbers(
        candidate=plan.label,
        target_rps_per_instance=plan.target_rps_per_instance,
        mean_latency_ms=max(plan.mean_latency_ms, 0.001),
        min_instances=fleet.min_instances,
        max_instances=max(plan.instances_per_hour),
        reaction_s=fleet.reaction_s,
        launch_s=fleet.provision_s + plan.cold_start_s,
        scale_in_s=fleet.scale_in_s,
        metric_period_s=fleet.metric_period_s,
    )


def _clear_policies(folder: Path) -> None:
    """Remove the files an earlier plan wrote (only those: the folder may hold the user's own)."""
    names = [*policy_texts(_PLACEHOLDER), POLICY_NUMBERS]
    for name in names:
        (folder / name).unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def write_policy_files(out_dir: Path, rec: Recommendation) -> list[Path]:
    """The winner's autoscaling policies under out_dir/autoscaling/, and every planned candidate's
    numbers (none without a plan: an earlier plan's files are removed)."""
    folder = out_dir / POLICY_FOLDER
    _clear_policies(folder)
    plan = rec.winner.traffic_plan if rec.winner else None
    if plan is None:
        return []
    fleet = rec.fleet or FleetSettings()
    numbers = {
        ev.trial_id: policy_numbers(ev.traffic_plan, fleet).model_dump(mode="json")
        for ev in rec.evaluations
        if ev.traffic_plan is not None
    }
    paths = write_policies(folder, policy_numbers(plan, fleet))
    (folder / POLICY_NUMBERS).write_text(json.dumps(numbers, indent=2) + "\n", encoding="utf-8")
    return paths


def write_candidate_policies(study_dir: Path, folder: Path, trial_id: str) -> list[Path]:
    """Write into folder the autoscaling policies the study's last `report --traffic` planned for this
    trial; [] when it planned none for it (no --traffic, or no rate per instance)."""
    path = study_dir / POLICY_FOLDER / POLICY_NUMBERS
    if not path.is_file():
        return []
    raw = json.loads(path.read_text(encoding="utf-8")).get(trial_id)
    return [] if raw is None else write_policies(folder, PolicyNumbers.model_validate(raw))


_PLACEHOLDER = PolicyNumbers(
    candidate="-",
    target_rps_per_instance=1,
    mean_latency_ms=1,
    min_instances=1,
    max_instances=1,
    reaction_s=0,
    launch_s=0,
    scale_in_s=0,
    metric_period_s=1,
)  # names the files policy_texts writes
