"""The rate search's confirmations: the rate found stands only if every run of it meets the bound.

The machine is scripted (its capacity per measurement, as a drifting shared host's), each point a
real HdrHistogram with its early-stopping verdict (helpers.traffic_factory); the search is the real
sweep_rate, and the plan reads the runs as the study records them.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.report_factory import make_trial
from helpers.traffic_factory import open_point

from deploybench.config import LoadConfig
from deploybench.load import InProcessTarget, sweeps
from deploybench.load.load_report import PointDetail
from deploybench.load.runner import PointResult
from deploybench.recommend.rate import find_rate

BOUND_MS = 100.0


class DriftingMachine:
    """Capacity `fast` for the first `slows_after` points, `slow` from then on; records the seeds."""

    def __init__(self, fast: float, slow: float, slows_after: int) -> None:
        self.fast, self.slow, self.slows_after = fast, slow, slows_after
        self.calls: list[tuple[float, int]] = []
        self.rng = np.random.default_rng(7)

    def __call__(self, target, cfg: LoadConfig, *, rate: float, **_: object) -> PointResult:
        capacity = self.fast if len(self.calls) < self.slows_after else self.slow
        self.calls.append((rate, cfg.seed))
        point = open_point(rate, capacity, BOUND_MS, self.rng)
        return PointResult(point, PointDetail(label=f"{rate:.1f} req/s"))


def _sweep(monkeypatch: pytest.MonkeyPatch, machine: DriftingMachine, confirmations: int):
    monkeypatch.setattr(sweeps, "measure_point", machine)
    cfg = LoadConfig(sweep="rate", slo_p99_ms=BOUND_MS, rate_confirmations=confirmations, seed=3)
    return sweeps.sweep_rate(InProcessTarget(lambda body: body, [b"x"]), cfg, start_rate=40.0)


def test_a_rate_that_misses_on_a_confirming_run_is_not_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    # 200 req/s of capacity while the search runs, 150 from its 7th point on: the rate found (150)
    # misses its first confirmation; 120, met once before, is within 10% of 85% of 150 and misses
    # too; 85% of 120 (102 req/s), a new rate, meets the bound in three runs and stands.
    machine = DriftingMachine(fast=200.0, slow=150.0, slows_after=6)
    report = _sweep(monkeypatch, machine, confirmations=2)
    found = report.points[report.slo_rate_index].target_rate
    assert found == pytest.approx(102.0)
    runs = [p for p in report.points if p.target_rate == found]
    assert len(runs) == 3 and all(p.slo.status == "met" for p in runs)
    seeds = [seed for rate, seed in machine.calls if rate == found]
    assert len(set(seeds)) == 3  # each confirmation its own arrivals
    assert any("102.0 req/s met the p99 verdict in 3 of 3 runs" in n for n in report.notes)
    # the plan reads the same runs: 140 met once but lies above 120's miss, so it is not the answer
    trial = make_trial("openvino", capacity_rps=200.0)
    trial = trial.model_copy(update={"points": [*trial.points, *report.points]})
    finding = find_rate(trial, None, BOUND_MS)
    assert finding is not None and finding.rate == pytest.approx(102.0)
    assert finding.high == 120.0 and "3 of 3" in finding.basis


def test_without_confirmations_one_lucky_run_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = DriftingMachine(fast=200.0, slow=150.0, slows_after=6)
    report = _sweep(monkeypatch, machine, confirmations=0)
    assert report.points[report.slo_rate_index].target_rate >= 150.0  # above what the machine now takes


def test_no_rate_holds_when_every_confirmation_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = DriftingMachine(fast=200.0, slow=10.0, slows_after=6)
    report = _sweep(monkeypatch, machine, confirmations=1)
    assert report.slo_rate_index is None
    assert any("no tested rate met" in n for n in report.notes)
    assert len(machine.calls) <= 6 + 2 * sweeps.MAX_CONFIRMED_RATES
