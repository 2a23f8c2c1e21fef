"""Is the client the bottleneck? Judged on the load actually delivered, not on how the OS scheduled us.

On a shared machine the OS preempts the load generator now and then; that says nothing about
whether it kept up. What does:
  - open loop: how late the sends went out against their schedule (p99 lateness above 5% of the
    latency p50, never below the event loop's timer granularity), or sends the client refused;
  - closed loop: the client's own time from a reply to the next send of that user (mean above 5%
    of the latency p50: it stretched every round trip);
  - always: a worker whose event loop is near saturation (busiest worker above 80% of a core).
Each reason carries its numbers, so the user sees by how much and what to change.
"""

from __future__ import annotations

from dataclasses import dataclass

LATENESS_SHARE = 0.05  # of the latency p50
TIMER_FLOOR_MS = 2.0  # uvloop's timers fire within ~1 ms of their time: below this, lateness is noise
GAP_SHARE = 0.05  # of the latency p50
MAX_CPU_PCT = 80.0  # the busiest worker's event loop above 80% of one core


@dataclass
class ClientEvidence:
    """What the generator measured about itself during a point."""

    open_loop: bool
    latency_p50_ms: float
    lateness_p99_ms: float | None = None
    send_gap_mean_ms: float | None = None
    send_gap_p99_ms: float | None = None
    busiest_worker_pct: float | None = None
    backlog_drops: int = 0


def _lateness(evidence: ClientEvidence) -> str | None:
    late = evidence.lateness_p99_ms
    bound = max(TIMER_FLOOR_MS, LATENESS_SHARE * evidence.latency_p50_ms)
    if late is None or late <= bound:
        return None
    return (
        f"client-bound: sends went out late, lateness p99 {late:.1f} ms > {bound:.1f} ms "
        f"({LATENESS_SHARE:.0%} of the {evidence.latency_p50_ms:.1f} ms latency p50, at least "
        f"{TIMER_FLOOR_MS:g} ms)"
    )


def _gap(evidence: ClientEvidence) -> str | None:
    gap = evidence.send_gap_mean_ms if evidence.send_gap_mean_ms is not None else evidence.send_gap_p99_ms
    bound = GAP_SHARE * evidence.latency_p50_ms
    if gap is None or gap <= bound:
        return None
    which = "mean" if evidence.send_gap_mean_ms is not None else "p99"
    return (
        f"client-bound: {gap:.2f} ms {which} from a reply to the next send > {bound:.2f} ms "
        f"({GAP_SHARE:.0%} of the {evidence.latency_p50_ms:.1f} ms latency p50)"
    )


def judge_client(evidence: ClientEvidence) -> list[str]:
    """Every reason the client, not the server, may have set the pace; [] when it kept up."""
    reasons = [_lateness(evidence)] if evidence.open_loop else [_gap(evidence)]
    if evidence.backlog_drops:
        reasons.append(f"client-bound: {evidence.backlog_drops} sends refused, too many requests in flight")
    cpu = evidence.busiest_worker_pct
    if cpu is not None and cpu > MAX_CPU_PCT:
        reasons.append(
            f"client-bound: busiest load worker {cpu:.0f}% of a core (limit {MAX_CPU_PCT:.0f}%): "
            "add --processes"
        )
    return [reason for reason in reasons if reason]
