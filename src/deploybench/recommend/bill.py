"""With the user's traffic (--traffic), every ranked candidate gets its fleet plan and, when the
objective is cost, the ranking follows the monthly autoscaled bill at that traffic.

Why the bill and not cost per 1M at the peak: the peak's figure assumes an instance busy every
second at its saturated rate; a real fleet runs below the p99 limit, keeps spares for the
autoscaler's lag, never falls below its minimum and is bought in whole instances. Two candidates
with the same cost per 1M can differ in bill, and a bill in whole instances has no interval to
test a tie on: equal bills keep the order the cost-per-1M ranking (with its tie rule) gave. A bill
stands on its rate per instance, so plans whose rate an open-loop verdict verified come first,
whatever the others' bills: a predicted rate (no rate search met the bound) may be far from what
the instance sustains, and a cheaper bill on it is no reason to deploy. The top candidates' plans
are checked by simulation (deploybench.traffic.simulate); the rest are not, to keep the report fast.
"""

from __future__ import annotations

from collections.abc import Sequence

from deploybench.recommend.capacity import (
    PlanInputs,
    TrafficPlan,
    closest_miss,
    plan_candidate,
    simulate_plan,
)
from deploybench.recommend.records import Evaluation
from deploybench.recommend.ties import TieOutcome
from deploybench.results import TrialRecord
from deploybench.traffic.fleet import FleetSettings
from deploybench.traffic.profile import TrafficProfile

SIMULATED = 3  # the top candidates whose plans are simulated
BILL_OBJECTIVE = "monthly bill at your traffic"


def attach_plans(
    ranked: Sequence[Evaluation],
    trials: Sequence[TrialRecord],
    traffic: TrafficProfile,
    settings: FleetSettings,
    p99_ms: float | None,
) -> None:
    """Each ranked candidate's fleet plan, from its own trial's measurements."""
    for ev in ranked:
        trial = trials[ev.trial_index]
        point = trial.points[ev.point_index] if ev.point_index is not None else None
        inputs = PlanInputs(trial, ev.label, ev.machine, point, ev.usd_per_hour)
        ev.traffic_plan = plan_candidate(inputs, traffic, p99_ms, settings)


def _bill(ev: Evaluation) -> float:
    plan = ev.traffic_plan
    if plan is None or plan.monthly_usd_autoscaled is None:
        return float("inf")
    return round(plan.monthly_usd_autoscaled, 2)


def unverified(ev: Evaluation) -> bool:
    """Its plan's rate was not verified by an open-loop verdict (predicted, or no bound)."""
    return ev.traffic_plan is not None and not ev.traffic_plan.verified


def order_by_bill(outcome: TieOutcome) -> TieOutcome:
    """The ranking by monthly bill, verified rates first (stable: equal bills keep their cost-per-1M
    order)."""
    ranked = sorted(outcome.ranked, key=lambda ev: (unverified(ev), _bill(ev)))
    if ranked == outcome.ranked:
        return TieOutcome(ranked, outcome.tied, outcome.comparison, outcome.chosen_by_rule_over)
    comparison = (
        "ranked by the monthly bill at your traffic, plans on a verified open-loop rate first; equal bills "
        f"keep the cost-per-1M order (which put {outcome.ranked[0].label} first)"
    )
    return TieOutcome(ranked, comparison=comparison)


def bill_reasons(ranked: Sequence[Evaluation]) -> None:
    """One line each in bill terms: the winner's bill, and each other's extra over it; a plan on an
    unverified rate says so, and what would verify it."""
    winner = ranked[0]
    best = _bill(winner)
    if best == float("inf"):
        return
    verified = sum(not unverified(ev) for ev in ranked if ev.traffic_plan is not None)
    winner.reason = (
        f"recommended: lowest monthly bill at your traffic of {len(ranked)} candidate(s) meeting the "
        "constraints"
        + (
            f", of the {verified} whose rate an open-loop verdict verified"
            if 0 < verified < len(ranked)
            else ""
        )
    )
    for ev in ranked[1:]:
        bill = _bill(ev)
        if bill == float("inf"):
            ev.reason = f"no bill at your traffic (no price or no rate per instance); {ev.reason}"
        elif bill > best:
            extra = f"{100 * (bill / best - 1):+.0f}%"
            ev.reason = f"${bill - best:,.0f} a month more than {winner.label} at your traffic ({extra})"
        elif unverified(ev) and not unverified(winner):
            ev.reason = (
                f"a lower bill (${bill:,.0f} a month) on a rate not verified in open loop: ranked after"
            )
    for ev in ranked:
        if unverified(ev) and ev.traffic_plan is not None:
            ev.reason = f"{ev.reason}; {unverified_words(ev.traffic_plan)}"


def unverified_words(plan: TrafficPlan) -> str:
    """What stands behind an unverified plan's bill, and the command that would verify it."""
    if plan.rate_source == "no bound":
        what, then = "no p99 bound: its bill meets no latency target", "plan for one"
    else:
        what, then = f"its rate ({plan.rate_per_instance:.1f} req/s) is predicted, not measured", "verify"
    return f"{what}; {then}: {plan.verify_with[0]}" if plan.verify_with else what


def simulate_top(
    ranked: Sequence[Evaluation],
    trials: Sequence[TrialRecord],
    traffic: TrafficProfile,
    settings: FleetSettings,
    p99_ms: float | None,
) -> None:
    for ev in ranked[:SIMULATED]:
        if ev.traffic_plan is not None:
            ev.traffic_plan = simulate_plan(
                ev.traffic_plan, trials[ev.trial_index], traffic, p99_ms, settings
            )


def traffic_note(
    ranked: Sequence[Evaluation], trials: Sequence[TrialRecord], labels: dict[str, str], p99_ms: float | None
) -> str | None:
    """Why there is no plan, never an empty answer: the closest candidate to the bound, and by how much."""
    if ranked and ranked[0].traffic_plan is not None:
        return None
    if ranked:
        return f"{ranked[0].label}: no rate per instance could be read from its measurements"
    if p99_ms is None:
        return "no candidate qualifies, so no fleet can be planned"
    return closest_miss(trials, labels, p99_ms)
