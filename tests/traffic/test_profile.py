"""--traffic: a constant rate, a CSV by hour or timestamp, a request log; bad input refused with
its file, line and reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deploybench.traffic.profile import TrafficError, read_traffic

DAY = [20.0] * 6 + [50, 100, 200, 300, 300, 250, 200, 150, 120, 100, 90, 80, 70, 60, 40, 30, 20, 20]


def _write(tmp_path: Path, text: str, name: str = "traffic.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_number_is_a_constant_rate_all_day():
    profile = read_traffic("42.5")
    assert profile.kind == "constant"
    assert profile.hourly_rates == [42.5] * 24
    assert profile.mean_rps == profile.peak_rps == 42.5


@pytest.mark.parametrize("header", ["", "hour,requests_per_second\n"])
def test_a_csv_by_hour_with_or_without_header(tmp_path: Path, header: str):
    text = header + "".join(f"{h},{r}\n" for h, r in enumerate(DAY))
    profile = read_traffic(str(_write(tmp_path, text)))
    assert profile.kind == "hourly" and profile.step_s == 3600
    assert profile.hourly_rates == DAY
    assert profile.peak_rps == 300


def test_a_csv_by_minute_timestamps_reads_whole_hours(tmp_path: Path):
    start = datetime(2026, 3, 2, tzinfo=UTC)
    rows = [f"{(start + timedelta(minutes=m)).isoformat()},{10 + m // 60}\n" for m in range(120)]
    profile = read_traffic(str(_write(tmp_path, "time,rps\n" + "".join(rows))))
    assert profile.kind == "timestamped" and profile.step_s == 60
    assert profile.hourly_rates == [10.0, 11.0]


def test_a_request_log_becomes_requests_per_minute(tmp_path: Path):
    start = 1_767_225_600.0  # Unix seconds
    stamps = [start + i * 0.5 for i in range(2 * 3600 * 2)]  # 2 req/s for two hours
    stamps += [start + 7200 + 1]  # a tail past the last whole hour: left out, and said so
    profile = read_traffic(str(_write(tmp_path, "\n".join(f"{t:.3f}" for t in stamps), "requests.log")))
    assert profile.kind == "log" and profile.step_s == 60
    assert profile.hours == 2
    assert profile.hourly_rates == pytest.approx([2.0, 2.0])
    assert "whole hours" in profile.notes[0]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("", 1, "empty file"),
        ("hour,rps\n", 2, "no rates"),
        ("0,10\n1,-5\n", 2, "negative rate"),
        ("0,10\n1,\n", 2, "missing rate"),
        ("0,10\n1,lots\n", 2, "not a number"),
        ("0,10\n2,10\n", 2, "hour 2 where hour 1 belongs: missing"),
        ("0,10\n1,10\n1,10\n", 3, "out of order or repeated"),
        ("".join(f"{h},10\n" for h in range(23)), 23, "23 hours"),
        ("".join(f"{h},0\n" for h in range(24)), 24, "every rate is 0"),
        ("2026-01-01T00:01:00,5\n2026-01-01T00:00:00,5\n", 2, "not after the line before"),
        ("2026-01-01T00:00:00,5\n2026-01-01T00:01:00,5\n2026-01-01T00:03:00,5\n", 3, "not 60 s"),
        ("2026-01-01T00:00:00\n2026-01-01T00:00:05\n2026-01-01T00:00:01\n", 3, "before the line before"),
        ("2026-01-01T00:00:00\n2026-01-01T00:30:00\n", 2, "less than an hour"),
        ("2026-01-01T00:00:00\nyesterday\n", 2, "not a timestamp"),
    ],
)
def test_malformed_traffic_is_refused_with_file_line_and_reason(
    tmp_path: Path, text: str, line: int, reason: str
):
    path = _write(tmp_path, text)
    with pytest.raises(TrafficError) as caught:
        read_traffic(str(path))
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert reason in str(caught.value)


@pytest.mark.parametrize("spec", ["0", "-3", "nan", "inf"])
def test_a_rate_must_be_positive_and_finite(spec: str):
    with pytest.raises(TrafficError, match="must be a number"):
        read_traffic(spec)


def test_a_missing_file_says_so(tmp_path: Path):
    with pytest.raises(TrafficError, match="no such file"):
        read_traffic(str(tmp_path / "nope.csv"))
