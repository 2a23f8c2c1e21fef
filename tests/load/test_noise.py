"""This machine's between-run noise: the record's maths, where it lives, and the term every point
interval adds from it (a point's own seconds cannot show the host's drift between runs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from deploybench.load.intervals import Block, point_intervals, widen
from deploybench.load.noise import (
    PRIOR_REL_SD,
    MachineKey,
    MachineNoise,
    Spread,
    load_noise,
    merge,
    noise_or_prior,
    record_path,
    record_repeats,
    record_throughput_series,
    spread_of,
    this_machine,
)
from deploybench.load.stats import new_histogram
from deploybench.results import Interval, LatencyStats, LoadPoint


def point(rps: float, p99_ms: float, invalid: str | None = None) -> LoadPoint:
    return LoadPoint(
        mode="closed",
        concurrency=16,
        duration_s=15.0,
        ok=int(rps * 15),
        throughput_rps=rps,
        latency=LatencyStats(count=int(rps * 15), p99_ms=p99_ms),
        stable=True,
        windows=3,
        invalid_reason=invalid,
    )


def record(rel_sd: float = 0.05, repeats: int = 10, df: int = 9) -> MachineNoise:
    spread = Spread(rel_sd=rel_sd, repeats=repeats, df=df)
    return MachineNoise(
        machine=this_machine(), throughput=spread, p99=spread, updated_at="2026-12-06T10:00:00"
    )


def test_the_spread_is_the_sd_of_the_log_estimates() -> None:
    values = [117.0, 143.0, 158.0, 178.0]
    spread = spread_of(values)
    logs = np.log(values)
    assert spread is not None and spread.rel_sd == pytest.approx(float(np.std(logs, ddof=1)))
    assert (spread.repeats, spread.df) == (4, 3)
    assert spread_of([120.0]) is None and spread_of([120.0, 0.0]) is None  # one estimate: no spread


def test_records_merge_by_pooled_variance_weighted_by_degrees_of_freedom() -> None:
    few = Spread(rel_sd=0.10, repeats=3, df=2)
    many = Spread(rel_sd=0.02, repeats=9, df=8)
    merged = merge(few, many)
    assert merged is not None and (merged.repeats, merged.df) == (12, 10)
    assert merged.rel_sd == pytest.approx(math.sqrt((2 * 0.10**2 + 8 * 0.02**2) / 10))  # more repeats win
    assert merge(None, many) == many and merge(few, None) == few and merge(None, None) is None
    two_series = merge(spread_of([100.0, 110.0, 90.0]), spread_of([200.0, 220.0, 180.0]))
    assert two_series is not None and two_series.rel_sd < 0.15  # levels differ: each series' own spread


def test_repeats_are_recorded_per_machine_and_merged(tmp_path: Path) -> None:
    first = record_repeats([point(100, 200), point(110, 190), point(90, 210)], by="first", root=tmp_path)
    assert first.throughput is not None and first.throughput.repeats == 3
    second = record_repeats(
        [point(100, 200), point(101, 201), point(99, 199), point(1, 1, invalid="a load worker died")],
        by="second",
        root=tmp_path,
    )
    assert second.throughput is not None and (second.throughput.repeats, second.throughput.df) == (6, 4)
    sds = [float(np.std(np.log(values), ddof=1)) for values in ([100, 110, 90], [100, 101, 99])]
    assert second.throughput.rel_sd == pytest.approx(math.sqrt((2 * sds[0] ** 2 + 2 * sds[1] ** 2) / 4))
    assert [s.by for s in second.sources] == ["first", "second"] and second.sources[1].repeats == 3
    stored = load_noise(tmp_path)
    assert stored == second and record_path(this_machine(), tmp_path).name.startswith(
        this_machine().hostname[:5]
    )
    saved = json.loads(record_path(this_machine(), tmp_path).read_text())
    assert saved["machine"]["cores"] >= 1 and saved["machine"]["cpu_model"]
    other = MachineKey(cpu_model="another CPU", cores=64, hostname=this_machine().hostname)
    assert load_noise(tmp_path, other) is None  # another machine's noise is not this one's
    with pytest.raises(ValueError, match="fewer than two"):
        record_repeats([point(100, 200)], by="one", root=tmp_path)


def test_the_record_lives_in_the_noise_folder_of_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEPLOYBENCH_NOISE_DIR")
    monkeypatch.setenv("DEPLOYBENCH_CACHE", str(tmp_path / "cache"))
    assert record_path(this_machine()).parent == tmp_path / "cache" / "noise"
    assert load_noise() is None


def test_widening_adds_the_between_run_term_in_quadrature_and_says_so() -> None:
    within = Interval(low=95.0, high=106.0, method="95% batch means")
    noise = record(rel_sd=0.05, df=9)
    wide = widen(within, 100.0, noise.throughput, noise)
    term = 2.262157 * 0.05 * 100.0  # t(0.975, 9 df) x rel_sd x estimate
    assert wide.low == pytest.approx(100.0 - math.hypot(5.0, term), rel=1e-5)
    assert wide.high == pytest.approx(100.0 + math.hypot(6.0, term), rel=1e-5)  # each side its own
    assert wide.between_run and wide.between_run_rel_sd == 0.05
    assert wide.method == (
        "95% batch means + between-run term ±11.3% from 10 repeats on this machine (2026-12-06)"
    )
    bare = widen(within, 100.0, None, None)
    assert (bare.low, bare.high) == (95.0, 106.0) and not bare.between_run
    assert "within-run only" in bare.method and "deploybench load --repeat" in bare.method


def _blocks(rng: np.random.Generator, slices: int, rate: float) -> list[Block]:
    blocks = []
    for _ in range(slices):
        hist = new_histogram()
        ok = int(rng.poisson(rate * 0.25))
        for value in rng.exponential(10_000, size=ok):
            hist.record_value(max(1, int(value)))
        blocks.append(Block.from_histogram(0.25, ok, hist))
    return blocks


def test_every_point_interval_carries_the_term_when_the_machine_has_a_record() -> None:
    blocks = _blocks(np.random.default_rng(4), slices=60, rate=400.0)
    own_rps, own_p99 = point_intervals(blocks)
    rps, p99 = point_intervals(blocks, noise=record(rel_sd=0.04))
    assert own_rps and own_p99 and rps and p99
    assert "within-run only" in own_rps.method and "within-run only" in own_p99.method
    assert rps.low < own_rps.low and rps.high > own_rps.high and rps.between_run
    assert p99.low < own_p99.low and p99.high > own_p99.high and p99.between_run
    assert "batch means" in rps.method and "between-run term ±9.0% from 10 repeats" in rps.method
    assert "moving-block bootstrap" in p99.method and "between-run term" in p99.method


def test_with_no_record_a_point_carries_the_prior_which_widens_but_backs_no_claim(tmp_path: Path) -> None:
    """A machine never measured with --repeat: its intervals still say how far the next run may land
    (the default prior), labelled as not measured here, and never count as carrying the term."""
    noise = noise_or_prior(tmp_path)
    assert noise.throughput and noise.throughput.prior and noise.throughput.rel_sd == PRIOR_REL_SD
    blocks = _blocks(np.random.default_rng(4), slices=60, rate=400.0)
    own_rps, own_p99 = point_intervals(blocks)
    rps, p99 = point_intervals(blocks, noise=noise)
    assert own_rps and own_p99 and rps and p99
    assert rps.low < own_rps.low and rps.high > own_rps.high and not rps.between_run
    assert p99.low < own_p99.low and p99.high > own_p99.high and not p99.between_run
    assert "between-run prior" in rps.method and "not measured on this machine" in p99.method
    assert (rps.high - rps.low) / ((rps.high + rps.low) / 2) > 0.4  # about ±26%: t(5 df) x 10%


def test_throughput_series_pool_into_the_record_and_p99_keeps_the_prior(tmp_path: Path) -> None:
    """A study's runoff records throughput only: later points carry its measured throughput term and
    the prior for p99; a series shorter than MIN_REPEATS says nothing."""
    assert record_throughput_series([[100.0, 101.0]], by="too short", root=tmp_path) is None
    series = [[100.0, 110.0, 90.0, 105.0], [50.0, 52.0, 48.0]]
    record = record_throughput_series(series, by="deploybench run: round 2", root=tmp_path)
    assert record is not None and record.throughput is not None and record.p99 is None
    assert record.throughput.df == 3 + 2 and not record.throughput.prior
    noise = noise_or_prior(tmp_path)
    assert noise.throughput == record.throughput
    assert noise.p99 is not None and noise.p99.prior
    rps, p99 = point_intervals(_blocks(np.random.default_rng(4), slices=60, rate=400.0), noise=noise)
    assert rps and p99 and rps.between_run and not p99.between_run
    assert "from 7 repeats on this machine" in rps.method and "between-run prior" in p99.method
