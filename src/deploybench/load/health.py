"""Is the client the bottleneck? A point where the generator itself struggled is flagged
client-bound instead of being reported as the server's peak."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_LATE_FRACTION = 0.01  # more than 1% of sends starting > 1 ms late
MAX_CPU_PCT = 80.0  # the busiest worker's event-loop thread above 80% of one core


@dataclass
class ClientHealth:
    """The generator's own view of one point."""

    cpu_pct: float | None
    late_fraction: float | None
    reasons: list[str] = field(default_factory=list)

    @property
    def client_bound(self) -> bool:
        return bool(self.reasons)


def judge_client(
    cpu_pct: float | None, late_fraction: float | None, open_loop: bool, late_ms: float = 1.0
) -> ClientHealth:
    """Apply both thresholds; say which one tripped so the user knows what to change.

    late_fraction counts sends (open loop) or event-loop wake-ups (closed loop) later than late_ms.
    """
    health = ClientHealth(cpu_pct=cpu_pct, late_fraction=late_fraction)
    if late_fraction is not None and late_fraction > MAX_LATE_FRACTION:
        what = "sends started" if open_loop else "event-loop wake-ups were"
        health.reasons.append(
            f"{late_fraction:.1%} of {what} more than {late_ms:g} ms late (limit {MAX_LATE_FRACTION:.0%})"
        )
    if cpu_pct is not None and cpu_pct > MAX_CPU_PCT:
        health.reasons.append(
            f"client worker {cpu_pct:.0f}% busy (limit {MAX_CPU_PCT:.0f}%): add --processes"
        )
    return health
