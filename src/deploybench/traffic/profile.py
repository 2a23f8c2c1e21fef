"""The user's traffic: a constant rate, a CSV of rates by hour or by timestamp, or a request log.

`--traffic 50` is 50 req/s all day. A CSV has two columns, the hour (0-23 for a day, 0-167 for a
week) or a timestamp (ISO 8601 or Unix seconds, evenly spaced, a minute or an hour apart), and the
rate in requests per second; a header line is optional. A request log has one timestamp per line
(a header line optional) and becomes requests per minute over the whole hours it spans.

The file is refused, with its path, line and reason, whenever a figure would have to be guessed:
a missing, negative or non-numeric rate, an hour out of order or missing, timestamps out of order
or unevenly spaced, an empty file or one with no traffic at all. A plan built on a misread profile
sizes the fleet wrongly without a word, which is worse than no plan.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field

from deploybench.config import StrictModel

HOUR_S = 3600
MINUTE_S = 60
STEPS = (MINUTE_S, HOUR_S)  # the spacings a timestamped CSV may have


class TrafficError(ValueError):
    """A traffic file or rate that cannot be read: names the file, the line and the reason."""


class TrafficProfile(StrictModel):
    """Requests per second over a period (a day, a week, or the whole hours a log spans), in equal
    steps of a minute or an hour; the period repeats (a day's profile is every day of the month)."""

    source: str = Field(description="what was read: the constant rate, or the file")
    kind: Literal["constant", "hourly", "timestamped", "log"]
    step_s: int = Field(description="seconds each rate covers: 60 or 3600")
    rates: list[float] = Field(description="requests per second, one per step, in time order")
    notes: list[str] = Field(
        default_factory=list, description="what reading the input decided, one line each"
    )

    @property
    def hours(self) -> int:
        return len(self.rates) * self.step_s // HOUR_S

    @property
    def hourly_rates(self) -> list[float]:
        """Mean requests per second of each hour of the period."""
        per_hour = HOUR_S // self.step_s
        return [sum(self.rates[h * per_hour : (h + 1) * per_hour]) / per_hour for h in range(self.hours)]

    @property
    def mean_rps(self) -> float:
        return sum(self.rates) / len(self.rates)

    @property
    def peak_rps(self) -> float:
        return max(self.rates)


def read_traffic(spec: str) -> TrafficProfile:
    """`--traffic FILE|RATE`: a number is a constant rate, anything else a file to read."""
    try:
        rate = float(spec)
    except ValueError:
        return read_traffic_file(Path(spec))
    if not math.isfinite(rate) or rate <= 0:
        raise TrafficError(f"--traffic {spec}: a constant rate must be a number of requests per second > 0")
    return TrafficProfile(
        source=f"constant {rate:g} req/s", kind="constant", step_s=HOUR_S, rates=[rate] * 24
    )


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank line; refuses a missing or empty file."""
    if not path.is_file():
        raise TrafficError(f"{path}: no such file (--traffic takes a rate in req/s or a file)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrafficError(f"{path}: unreadable: {exc}") from exc
    rows = [(n, [f.strip() for f in line.split(",")]) for n, line in enumerate(text.splitlines(), 1)]
    rows = [(n, fields) for n, fields in rows if any(fields)]
    if not rows:
        raise TrafficError(f"{path}:1: empty file: no rates and no timestamps")
    return rows


def read_traffic_file(path: Path) -> TrafficProfile:
    """A CSV of (hour or timestamp, rate) or a request log (a timestamp per line)."""
    rows = _rows(path)
    two_columns = all(len(fields) == 2 for _, fields in rows)
    if not two_columns:
        return _log_profile(path, rows)
    if _is_header(rows[0][1]):
        rows = rows[1:]
        if not rows:
            raise TrafficError(f"{path}:2: a header and no rows: no rates")
    if _hour(rows[0][1][0]) is not None:
        return _hourly_profile(path, rows)
    return _timestamped_profile(path, rows)


def _is_header(fields: list[str]) -> bool:
    """A first line whose second field is not a number and whose first is neither an hour nor a time."""
    return _number(fields[1]) is None and _hour(fields[0]) is None and _timestamp(fields[0]) is None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _hour(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) < 168 else None


def _timestamp(text: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 time (naive: read as UTC) or of a Unix time."""
    number = _number(text)
    if number is not None and number >= 1e8:  # Unix seconds; small numbers are hours, not times
        return number
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return (moment - datetime(1970, 1, 1)).total_seconds()
    return moment.timestamp()


def _rate(path: Path, line: int, text: str) -> float:
    if not text:
        raise TrafficError(f"{path}:{line}: missing rate (requests per second) in the second column")
    value = _number(text)
    if value is None:
        raise TrafficError(f"{path}:{line}: rate {text!r} is not a number of requests per second")
    if value < 0:
        raise TrafficError(f"{path}:{line}: negative rate {value:g} req/s")
    return value


def _checked(path: Path, profile: TrafficProfile, line: int) -> TrafficProfile:
    if profile.peak_rps <= 0:
        raise TrafficError(f"{path}:{line}: every rate is 0: no traffic to plan for")
    return profile


def _hourly_profile(path: Path, rows: list[tuple[int, list[str]]]) -> TrafficProfile:
    """Hours 0, 1, 2, ... in order, each once: 24 of them (a day) or 168 (a week)."""
    rates: list[float] = []
    for line, (hour_text, rate_text) in rows:
        hour = _hour(hour_text)
        if hour is None:
            raise TrafficError(f"{path}:{line}: {hour_text!r} is not an hour (0-23, or 0-167 for a week)")
        if hour != len(rates):
            why = "missing" if hour > len(rates) else "out of order or repeated"
            raise TrafficError(f"{path}:{line}: hour {hour} where hour {len(rates)} belongs: {why}")
        rates.append(_rate(path, line, rate_text))
    if len(rates) not in (24, 168):
        last = rows[-1][0]
        raise TrafficError(
            f"{path}:{last}: {len(rates)} hours: a profile by hour covers a day (0-23) or a week (0-167)"
        )
    profile = TrafficProfile(source=str(path), kind="hourly", step_s=HOUR_S, rates=rates)
    return _checked(path, profile, rows[-1][0])


def _timestamped_profile(path: Path, rows: list[tuple[int, list[str]]]) -> TrafficProfile:
    """Evenly spaced timestamps, a minute or an hour apart, covering whole hours."""
    times: list[float] = []
    rates: list[float] = []
    for line, (time_text, rate_text) in rows:
        moment = _timestamp(time_text)
        if moment is None:
            raise TrafficError(f"{path}:{line}: {time_text!r} is neither an hour (0-167) nor a timestamp")
        if times and moment <= times[-1]:
            raise TrafficError(f"{path}:{line}: timestamp {time_text} is not after the line before")
        times.append(moment)
        rates.append(_rate(path, line, rate_text))
    step = times[1] - times[0] if len(times) > 1 else HOUR_S
    if step not in STEPS:
        raise TrafficError(
            f"{path}:{rows[1][0]}: timestamps {step:g} s apart: give one row per minute or hour"
        )
    for (line, _), before, after in zip(rows[1:], times, times[1:], strict=False):
        if after - before != step:
            raise TrafficError(f"{path}:{line}: {after - before:g} s after the line before, not {step:g} s")
    if len(rates) * step % HOUR_S:
        raise TrafficError(
            f"{path}:{rows[-1][0]}: {len(rates)} rows of {step:g} s do not make whole hours; "
            "the plan counts instances per hour"
        )
    profile = TrafficProfile(source=str(path), kind="timestamped", step_s=int(step), rates=rates)
    return _checked(path, profile, rows[-1][0])


def _log_profile(path: Path, rows: list[tuple[int, list[str]]]) -> TrafficProfile:
    """One request per line, timestamp first, in time order: counted per minute over whole hours."""
    if _timestamp(rows[0][1][0]) is None and len(rows) > 1:
        rows = rows[1:]  # a header line
    times: list[float] = []
    for line, fields in rows:
        moment = _timestamp(fields[0])
        if moment is None:
            raise TrafficError(f"{path}:{line}: {fields[0]!r} is not a timestamp (ISO 8601 or Unix seconds)")
        if times and moment < times[-1]:
            raise TrafficError(f"{path}:{line}: timestamp {fields[0]} is before the line before")
        times.append(moment)
    start = math.floor(times[0] / MINUTE_S) * MINUTE_S
    hours = math.floor((times[-1] - start) / HOUR_S)
    if hours < 1:
        raise TrafficError(
            f"{path}:{rows[-1][0]}: the log spans less than an hour: too short to plan by hour"
        )
    counts = [0] * (hours * HOUR_S // MINUTE_S)
    kept = 0
    for moment in times:
        slot = int((moment - start) // MINUTE_S)
        if slot < len(counts):
            counts[slot] += 1
            kept += 1
    note = f"{len(times)} requests read; the {hours} whole hours from the first kept ({kept} requests)"
    profile = TrafficProfile(
        source=str(path), kind="log", step_s=MINUTE_S, rates=[c / MINUTE_S for c in counts], notes=[note]
    )
    return _checked(path, profile, rows[-1][0])
