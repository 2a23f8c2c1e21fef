"""This machine's between-run noise: how far repeated points of one unchanged server spread.

A point's own interval (deploybench.load.intervals) describes its own seconds. Points measured at
different times also differ by the host's drift between them: on a shared 2-vCPU host ten back-to-back
15 s points of one server read 117 to 178 req/s while each interval was a few % wide. That spread is
measured, not assumed: `deploybench load --repeat N` measures N back-to-back points of one server and
records the spread of their estimates here, one record per machine (CPU model, logical cores, host
name) in the deploybench cache ($DEPLOYBENCH_NOISE_DIR, else <cache root>/noise). A study adds its
round-2 runoff (each server's windows over a minute or more; throughput only). Every later point
interval on this machine adds it as a between-run term (intervals.widen); a figure with no record
takes the prior (PRIOR_REL_SD), which widens alike but is labelled as not measured here.

The spread is the standard deviation of the log estimates (about the relative SD) per figure,
throughput and p99. Records merge by pooled variance, each series weighted by its degrees of freedom
(its repeats less one), so more repeats weigh more. It is the raw spread of the estimates, each run's
own sampling noise included: added to a within-run half-width it counts that noise twice, a
conservative choice (intervals a little wide) that needs no model of how the two parts divide.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field, ValidationError

from deploybench.cache import default_cache_root
from deploybench.config import StrictModel
from deploybench.hardware import detect_cpu
from deploybench.results import LoadPoint

NOISE_DIR_ENV = "DEPLOYBENCH_NOISE_DIR"
MIN_REPEATS = 3  # two points give one degree of freedom: a t quantile of 12.7 on the term
# With no record the interval still has to say how far the next run may land: a prior, the spread of
# series measured on shared 2-vCPU cloud hosts (docs/measurements.md, "Between-run prior"), on few
# degrees of freedom so its t quantile stays wide. It never backs "beyond the noise" (not measured here).
PRIOR_REL_SD = 0.10
PRIOR_DF = 5
KEPT_SOURCES = 20


class Spread(StrictModel):
    """The between-run spread of one figure over repeated points of one unchanged server."""

    rel_sd: float = Field(ge=0, description="standard deviation of the log estimates (~ relative SD)")
    repeats: int = Field(ge=2, description="points it comes from, over every series merged")
    df: int = Field(ge=1, description="degrees of freedom: each series' repeats less one, summed")
    prior: bool = Field(
        False, description="True: not measured on this machine, the default prior (PRIOR_REL_SD) stands in"
    )


class MachineKey(StrictModel):
    """Which machine a record describes: its noise is its own."""

    cpu_model: str
    cores: int
    hostname: str


class NoiseSource(StrictModel):
    """One series of repeats that went into the record: when, by what, and what it alone read."""

    at: str
    by: str
    repeats: int
    throughput_rel_sd: float | None = None
    p99_rel_sd: float | None = None


class MachineNoise(StrictModel):
    """The between-run spread of throughput and p99 measured on one machine."""

    machine: MachineKey
    throughput: Spread | None = None
    p99: Spread | None = None
    updated_at: str = Field(description="when the last series was merged in (UTC, ISO 8601)")
    sources: list[NoiseSource] = Field(default_factory=list, description=f"the last {KEPT_SOURCES} series")

    @property
    def date(self) -> str:
        return self.updated_at[:10]


def this_machine() -> MachineKey:
    return MachineKey(
        cpu_model=detect_cpu().model_name or "unknown CPU",
        cores=os.cpu_count() or 1,
        hostname=socket.gethostname(),
    )


def noise_dir() -> Path:
    """$DEPLOYBENCH_NOISE_DIR, else <cache root>/noise."""
    env = os.environ.get(NOISE_DIR_ENV)
    return Path(env).expanduser() if env else default_cache_root() / "noise"


def record_path(machine: MachineKey, root: Path | None = None) -> Path:
    """One file per machine: its host name (readable) and a digest of the whole key."""
    digest = hashlib.sha256(machine.model_dump_json().encode()).hexdigest()[:12]
    host = re.sub(r"[^A-Za-z0-9_.-]+", "_", machine.hostname).strip("_")[:40] or "host"
    return (root or noise_dir()) / f"{host}-{digest}.json"


PRIOR = Spread(rel_sd=PRIOR_REL_SD, repeats=PRIOR_DF + 1, df=PRIOR_DF, prior=True)


def prior_noise(machine: MachineKey | None = None) -> MachineNoise:
    """The stand-in for a machine with no record: the prior on both figures."""
    return MachineNoise(machine=machine or this_machine(), throughput=PRIOR, p99=PRIOR, updated_at="")


def noise_or_prior(root: Path | None = None) -> MachineNoise:
    """This machine's record, each figure it lacks (a study's runoff records throughput only) from the
    prior, else the prior: every point interval says how far the next run may land."""
    record = load_noise(root)
    if record is None:
        return prior_noise()
    return record.model_copy(update={"throughput": record.throughput or PRIOR, "p99": record.p99 or PRIOR})


def load_noise(root: Path | None = None, machine: MachineKey | None = None) -> MachineNoise | None:
    """This machine's record; None when none was measured (or the file is unreadable)."""
    path = record_path(machine or this_machine(), root)
    try:
        return MachineNoise.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, ValidationError):
        return None


def spread_of(estimates: Sequence[float]) -> Spread | None:
    """The sample SD of the log estimates of one series; None below two positive estimates."""
    logs = [math.log(value) for value in estimates if value > 0]
    if len(logs) < 2:
        return None
    mean = sum(logs) / len(logs)
    variance = sum((x - mean) ** 2 for x in logs) / (len(logs) - 1)
    return Spread(rel_sd=math.sqrt(variance), repeats=len(logs), df=len(logs) - 1)


def merge(old: Spread | None, new: Spread | None) -> Spread | None:
    """Pooled variance: each side weighted by its degrees of freedom."""
    if old is None or new is None:
        return old or new
    df = old.df + new.df
    variance = (old.df * old.rel_sd**2 + new.df * new.rel_sd**2) / df
    return Spread(rel_sd=math.sqrt(variance), repeats=old.repeats + new.repeats, df=df)


def series_of(points: Sequence[LoadPoint]) -> tuple[Spread | None, Spread | None]:
    """(throughput, p99) spread of repeated points; a point whose measurement broke does not count."""
    valid = [p for p in points if p.invalid_reason is None and p.ok > 0]
    return spread_of([p.throughput_rps for p in valid]), spread_of([p.latency.p99_ms for p in valid])


def record_repeats(points: Sequence[LoadPoint], by: str, root: Path | None = None) -> MachineNoise:
    """Merge the spread of these repeated points into this machine's record and write it."""
    throughput, p99 = series_of(points)
    if throughput is None:
        raise ValueError("fewer than two valid repeats: no spread to record")
    return _merge_into_record(throughput, p99, by, root)


def record_throughput_series(
    series: Sequence[Sequence[float]], by: str, root: Path | None = None
) -> MachineNoise | None:
    """Merge several series of one server's throughput each (a runoff's rounds, windows of every
    contender taken in turn over a minute or more) into the record, throughput only: each series
    of MIN_REPEATS or more is its own sample of this machine's drift, pooled by degrees of freedom.
    None when no series is long enough."""
    throughput = None
    for values in series:
        if len(values) >= MIN_REPEATS:
            throughput = merge(throughput, spread_of(values))
    return None if throughput is None else _merge_into_record(throughput, None, by, root)


def _merge_into_record(throughput: Spread, p99: Spread | None, by: str, root: Path | None) -> MachineNoise:
    machine = this_machine()
    old = load_noise(root, machine)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    source = NoiseSource(
        at=now,
        by=by,
        repeats=throughput.repeats,
        throughput_rel_sd=throughput.rel_sd,
        p99_rel_sd=p99.rel_sd if p99 else None,
    )
    record = MachineNoise(
        machine=machine,
        throughput=merge(old.throughput if old else None, throughput),
        p99=merge(old.p99 if old else None, p99),
        updated_at=now,
        sources=[*(old.sources if old else []), source][-KEPT_SOURCES:],
    )
    path = record_path(machine, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record.model_dump(), indent=2), encoding="utf-8")
    temporary.replace(path)  # a reader never sees half a file
    return record
