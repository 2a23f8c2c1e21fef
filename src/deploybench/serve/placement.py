"""Core placement of the server's processes, and the thread settings a worker's runtime starts with.

Why a plan instead of leaving it to the OS and the runtimes: each runtime assumes it owns the whole
machine. Two 1-thread OpenVINO workers with the default CPU pinning can both pin their thread to
core 0 and share it. A worker that sets its own affinity (sched_setaffinity)
before its runtime loads makes every thread the runtime creates inherit that mask, and OpenVINO's
own pinning then stays inside it. The front (HTTP) process shares every core by default, or takes
only the cores no worker was given (RuntimeKnobs.front = "rest"), which helps only when some are
left over; both are measured by bench/serve_overhead.py.

The plan is computed once in the front from the cores it may use and handed to each worker by index;
what each worker really got (the mask of every one of its threads) is read back and reported.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploybench.config import RuntimeKnobs

Cores = tuple[int, ...]


@dataclass(frozen=True)
class CorePlan:
    """Which cores each worker and the front run on (None: left as inherited, i.e. every core)."""

    workers: tuple[Cores | None, ...]
    front: Cores | None
    note: str

    def for_worker(self, index: int) -> Cores | None:
        return self.workers[index] if index < len(self.workers) else None

    def describe(self) -> dict[str, Any]:
        return {
            "workers": [list(cores) if cores is not None else None for cores in self.workers],
            "front": list(self.front) if self.front is not None else None,
            "note": self.note,
        }


def available_cores() -> list[int]:
    """The cores this process may run on (its affinity mask), lowest first."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no affinity control
        return list(range(os.cpu_count() or 1))


def plan_cores(cores: Sequence[int], workers: int, threads: int, knobs: RuntimeKnobs) -> CorePlan:
    """Disjoint blocks of `threads` cores per worker, taken from the highest cores down (the front
    and the kernel's interrupt work stay on the lowest). Oversubscribed layouts split what there is."""
    cores = sorted(cores)
    if not knobs.pin or not cores:
        return CorePlan((None,) * workers, None, "unpinned: the OS schedules every process on every core")
    need = workers * threads
    if need <= len(cores):
        top = len(cores)
        blocks = tuple(tuple(cores[top - (i + 1) * threads : top - i * threads]) for i in range(workers))
        rest = tuple(cores[: top - need])
        if knobs.front == "rest" and rest:
            return CorePlan(blocks, rest, f"front on the {len(rest)} core(s) no worker uses")
        return CorePlan(blocks, None, "front shares every core with the workers")
    per = len(cores) // workers
    if per >= 1:
        blocks = tuple(tuple(cores[i * per : (i + 1) * per]) for i in range(workers))
        note = f"oversubscribed: {workers} x {threads} threads on {len(cores)} cores, {per} core(s) each"
    else:
        blocks = tuple((cores[i % len(cores)],) for i in range(workers))
        note = f"oversubscribed: {workers} workers on {len(cores)} cores, several per core"
    return CorePlan(blocks, None, note)


def apply_cores(cores: Cores | None) -> bool:
    """Restrict every thread of this process (and so every thread created from now on) to `cores`.

    sched_setaffinity acts on one thread: threads started before this call (the interpreter may
    already run one) are moved one by one, or they would keep running on every core.
    """
    if cores is None or not hasattr(os, "sched_setaffinity"):
        return False
    try:
        os.sched_setaffinity(0, cores)
    except OSError:
        return False
    for task in Path("/proc/self/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            os.sched_setaffinity(int(task.name), cores)
    return True


# OpenMP's wait policy per RuntimeKnobs.spin; None: libgomp's own default (spin ~300k iterations,
# then sleep), so the variable is removed: PASSIVE makes every parallel region sleep and wake, and
# ACTIVE's idle threads spin and starve whatever runs beside the worker (bench/serve_overhead.py).
OMP_WAIT = {None: None, False: "PASSIVE", True: "ACTIVE"}


def worker_environment(threads: int, knobs: RuntimeKnobs) -> dict[str, str | None]:
    """Variables OpenMP/MKL read once when they load, so they are set before any runtime imports;
    None: removed (the runtime's own default applies, whatever the parent process had set)."""
    per_stream = str(knobs.threads_per_stream(threads))
    env: dict[str, str | None] = {
        name: per_stream for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    }
    env["OMP_WAIT_POLICY"] = OMP_WAIT[knobs.spin]
    env["GOMP_SPINCOUNT"] = None
    env["OMP_PROC_BIND"] = "close" if knobs.thread_pinning else "false"
    env["OMP_PLACES"] = "cores" if knobs.thread_pinning else None
    return env


def apply_environment(env: dict[str, str | None]) -> None:
    """Set (or, for None, remove) each variable in this process."""
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def thread_affinities(pid: int | str = "self") -> dict[str, int]:
    """How many of the process's threads may run on each core set, e.g. {"1": 9}: read back from
    /proc, so a runtime that re-pinned its threads outside the plan would show here."""
    counts: Counter[str] = Counter()
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(OSError):
            for line in status.read_text().splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    counts[line.split(":", 1)[1].strip()] += 1
    return dict(counts)
