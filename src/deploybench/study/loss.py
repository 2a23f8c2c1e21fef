"""Trials lost to the infrastructure, told apart from candidates that failed on their own.

A failed trial is final: a resumed study does not measure it again, because a candidate whose server
cannot start, crashes by itself or errors under load would fail again at the same cost. A trial lost
to the infrastructure says nothing about its candidate: its node died or its Ray task was lost, a
process was killed by a signal the study did not send, or the load generator broke. Its record is
still appended (which node, when, why: the evidence stays in the folder) but marked retryable, so the
next run measures the trial again and the new record replaces it (results.latest_trials). Keeping the
record, rather than leaving the trial out of trials.jsonl, is what lets the report and the CLI say what
happened; old folders read unchanged, their records having no retryable field (False).

A kill from outside is an exit by SIGKILL, SIGTERM, SIGINT or SIGHUP (what people, init systems and
schedulers send; the study stops its servers only after it has judged them), unless the kernel's OOM
killer fired during the trial: its kills are SIGKILL too, and a candidate that ran out of memory failed
on its own. A signal a process raises on itself (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL) is its crash.
"""

from __future__ import annotations

import signal
from pathlib import Path

from deploybench.results import LoadPoint, TrialRecord

LOST = "lost to the infrastructure"
OUTSIDE_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
VMSTAT = Path("/proc/vmstat")


def oom_kills() -> int | None:
    """How many processes the kernel's OOM killer has killed since boot; None where it does not say."""
    try:
        for line in VMSTAT.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def killed_from_outside(returncode: int | None, oom_before: int | None) -> str | None:
    """Why a process's exit was a kill from outside (the signal, in words), or None when it ended on its
    own: a normal exit, a crash signal, or a SIGKILL while the OOM killer was at work."""
    if returncode is None or returncode >= 0:
        return None
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return None
    if sig not in OUTSIDE_SIGNALS:
        return None
    if sig == signal.SIGKILL and oom_before is not None and (oom_kills() or 0) > oom_before:
        return None
    return f"killed by {sig.name}, a signal the study did not send"


def broken_load(points: list[LoadPoint]) -> str | None:
    """The load generator broke during the trial (a load worker died or failed: the point's
    invalid_reason, which only the load generator's own failures set); None when it held."""
    for point in points:
        if point.invalid_reason is not None:
            return f"the load generator broke ({point.invalid_reason})"
    return None


def lost_reason(why: str) -> str:
    return f"{LOST}: {why}; rerun to measure it"


def as_lost(record: TrialRecord, why: str) -> TrialRecord:
    """The trial as recorded when the infrastructure lost it: failed, retryable, saying why."""
    return record.model_copy(update={"status": "failed", "retryable": True, "reason": lost_reason(why)})
