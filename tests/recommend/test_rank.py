"""Recommendation: operating points, constraints, ranking, Pareto front, reasons, ties, all-rejected."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers.report_factory import C5_XLARGE, make_trial

from deploybench.config import Constraints
from deploybench.load import decode_histogram, slo_verdict
from deploybench.pricing.catalogue import PriceOverride
from deploybench.recommend.rank import pareto_front, recommend, select_point
from deploybench.results import MachineInfo, TrialRecord

VS_BASELINE = re.compile(r"^\d+\.\dx throughput, [+-]\d+% p99 at 16 clients, [+-]\d+% cost per 1M$")


def _by_label(rec):
    return {ev.label: ev for ev in rec.evaluations}


def test_default_objective_picks_the_cheapest_per_million(cpu_trials: list[TrialRecord]):
    rec = recommend(cpu_trials)
    winner = rec.winner
    assert winner is not None and winner.label == "openvino-int8 int8 w2t1 b4/2ms"
    assert winner.rank == 1 and winner.pareto
    assert winner.cost_per_1m == pytest.approx(0.204 / (winner.throughput_rps * 3600) * 1e6)
    assert rec.headline.startswith("Recommended: openvino-int8 int8 w2t1 b4/2ms on ml.c5.xlarge: $0.")
    assert VS_BASELINE.match(winner.vs_baseline), winner.vs_baseline
    costs = [ev.cost_per_1m for ev in rec.evaluations if ev.eligible]
    assert costs == sorted(costs)


def test_every_loser_has_a_one_line_reason(cpu_trials: list[TrialRecord]):
    evs = _by_label(recommend(cpu_trials))
    assert evs["onnxruntime-int8-s8s8 int8 w1t2"].reason == "parity failed: top-1 agreement 0.61 < 0.75"
    assert evs["compile fp32 w1t2"].reason.startswith("failed trial: server did not answer /ping")
    assert evs["onnxruntime-int8 int8 w1t2"].reason.startswith("dominated by openvino-int8")
    assert all(ev.reason and "\n" not in ev.reason for ev in evs.values())


def test_pareto_member_that_lost_on_cost_says_by_how_much():
    gpu = MachineInfo(label="ml.g4dn.xlarge", instance="ml.g4dn.xlarge", price_per_hour=0.7364)
    cheap = make_trial("openvino-int8", "int8", capacity_rps=50)
    fast = make_trial("tensorrt", "fp16", capacity_rps=100, machine=gpu)
    rec = recommend([fast, cheap])
    assert rec.winner.backend == "openvino-int8"
    loser = rec.evaluations[1]
    pct = (loser.cost_per_1m / rec.winner.cost_per_1m - 1) * 100
    assert (
        loser.reason
        == f"more expensive than openvino-int8 int8 w1t2 by {pct:.0f}% per 1M (on the Pareto front)"
    )
    assert loser.cost_vs_winner == pytest.approx(0.7364 / 100 / (0.204 / 50), rel=1e-3)


def test_baseline_is_eager_with_default_knobs(cpu_trials: list[TrialRecord]):
    rec = recommend(cpu_trials)
    eager = _by_label(rec)["eager fp32 w1t2"]
    assert rec.baseline_key == eager.key
    assert eager.vs_baseline == "1.0x throughput, +0% p99 at 16 clients, +0% cost per 1M"
    winner = rec.winner
    assert winner.throughput_x == pytest.approx(winner.throughput_rps / eager.throughput_rps)
    assert winner.cost_change_pct == pytest.approx((winner.cost_per_1m / eager.cost_per_1m - 1) * 100)


def test_p99_budget_judges_each_trial_at_its_fastest_point_within_it(cpu_trials: list[TrialRecord]):
    rec = recommend(cpu_trials, Constraints(p99_ms=60))
    evs = _by_label(rec)
    for ev in rec.evaluations:
        if ev.eligible:
            trial = cpu_trials[ev.trial_index]
            within = [p.throughput_rps for p in trial.points if _verdict(p, 60).status == "met"]
            assert ev.p99_ms <= 60 and ev.throughput_rps == max(within)
    assert re.match(
        r"SLO missed at every load by its early-stopping verdict \(best p99 [\d.]+ ms > 60 ms\)",
        evs["eager fp32 w1t2"].reason,
    )
    # eager missed the SLO, yet the comparison still uses it (at its peak) as the baseline
    assert VS_BASELINE.match(rec.winner.vs_baseline)


def _verdict(point, bound_ms: float):
    return slo_verdict(decode_histogram(point.histogram or ""), point.error_count, bound_ms)


def test_an_slo_is_met_only_by_its_verdict_never_by_a_raw_p99():
    """200 requests all far under the bound: the raw p99 'meets' 500 ms, the verdict cannot (459 needed)."""
    trial = make_trial("openvino-int8", "int8", capacity_rps=90)
    few = [_shrunk(p, 200) for p in trial.points]
    assert all(p.latency.p99_ms < 500 for p in few)
    ev = recommend([trial.model_copy(update={"points": few})], Constraints(p99_ms=500)).evaluations[0]
    assert not ev.eligible
    assert "459" in ev.reason and "verdict" in ev.reason


def _shrunk(point, count: int):
    """The same point measured on only `count` requests (histogram rebuilt from its first values)."""
    from helpers.report_factory import histogram_stats

    latencies = np.full(count, point.latency.p50_ms)
    stats, encoded = histogram_stats(latencies)
    return point.model_copy(update={"ok": count, "latency": stats, "histogram": encoded, "slo": None})


def test_min_throughput_filters(cpu_trials: list[TrialRecord]):
    rec = recommend(cpu_trials, Constraints(min_throughput=80))
    assert {ev.label for ev in rec.evaluations if ev.eligible} == {
        "openvino-int8 int8 w2t1 b4/2ms",
        "openvino-int8 int8 w1t2",
    }
    assert _by_label(rec)["openvino bf16 w1t2"].reason.startswith("below min throughput")


@pytest.mark.parametrize(
    ("objective", "expected"), [("throughput", "openvino-int8 int8 w2t1 b4/2ms"), ("p99", None)]
)
def test_objectives(cpu_trials: list[TrialRecord], objective: str, expected: str | None):
    rec = recommend(cpu_trials, Constraints(objective=objective))
    eligible = [ev for ev in rec.evaluations if ev.eligible]
    if objective == "throughput":
        assert rec.winner.label == expected
        assert [e.throughput_rps for e in eligible] == sorted(
            (e.throughput_rps for e in eligible), reverse=True
        )
    else:
        assert rec.winner.p99_ms == min(e.p99_ms for e in eligible)


def test_rejected_trial_is_never_recommended_even_if_fastest():
    fast = make_trial("onnxruntime-int8-s8s8", "int8", capacity_rps=500)
    rejected = fast.model_copy(update={"status": "rejected", "reason": "cosine 0.80 < 0.95"})
    rec = recommend([make_trial("eager", capacity_rps=16), rejected])
    assert rec.winner.backend == "eager"
    assert _by_label(rec)["onnxruntime-int8-s8s8 int8 w1t2"].reason == "parity failed: cosine 0.80 < 0.95"


def test_client_bound_measurement_is_not_an_operating_point():
    bound = make_trial("openvino-int8", "int8", capacity_rps=900, client_bound=True)
    rec = recommend([make_trial("eager", capacity_rps=16), bound])
    assert rec.winner.backend == "eager"
    assert _by_label(rec)["openvino-int8 int8 w1t2"].reason.startswith(
        "client-bound measurement at every load"
    )


def _with_client(trial, cpu_pct: float):
    points = [
        p.model_copy(
            update={"client_bound": True, "client_cpu_pct": cpu_pct, "flags": ["client-bound: late"]}
        )
        for p in trial.points
    ]
    return trial.model_copy(update={"points": points})


def test_one_rule_for_every_trial_a_client_bound_point_is_never_an_operating_point():
    """The old co-located fallback judged one trial at flagged points when it had no clean one."""
    eager = make_trial("eager", capacity_rps=16)
    lagging = _with_client(make_trial("openvino-int8", "int8", capacity_rps=90), cpu_pct=6.0)
    rec = recommend([eager, lagging])
    assert rec.winner.backend == "eager" and not rec.winner.client_bound
    assert not any("client-bound" in note for note in rec.notes)
    reason = _by_label(rec)["openvino-int8 int8 w1t2"].reason
    assert reason.startswith("client-bound measurement at every load")


def test_a_saturated_client_is_never_an_operating_point():
    busy = _with_client(make_trial("openvino-int8", "int8", capacity_rps=900), cpu_pct=97.0)
    rec = recommend([make_trial("eager", capacity_rps=16), busy])
    assert rec.winner.backend == "eager" and not rec.winner.client_bound
    assert _by_label(rec)["openvino-int8 int8 w1t2"].reason.startswith(
        "client-bound measurement at every load"
    )


def test_an_invalid_point_is_never_an_operating_point():
    trial = make_trial("eager", capacity_rps=20)
    points = [
        p.model_copy(
            update={
                "invalid_reason": "load worker 1 died (exit code -9)",
                "flags": ["invalid: load worker 1 died (exit code -9)"],
            }
        )
        for p in trial.points
    ]
    ev = recommend([trial.model_copy(update={"points": points})]).evaluations[0]
    assert not ev.eligible and "invalid" in ev.reason


def test_a_winner_within_the_noise_of_the_runner_up_is_a_statistical_tie():
    """40.6 vs 40 req/s with +-1% intervals overlap: tied, and the data show the smaller one within
    5% (0.97 at the low end of the combined interval): the tie rule prefers fewer cores."""
    small = make_trial("alpha", capacity_rps=40, workers=1, threads=2, noise=0.01)
    big = make_trial("beta", capacity_rps=40.6, workers=2, threads=2, noise=0.01)
    rec = recommend([big, small], Constraints(objective="throughput"))
    assert rec.winner.backend == "alpha"  # fewer cores, although its point estimate is lower
    assert rec.tied_with == [_by_label(rec)["beta fp32 w2t2"].key]
    assert "statistically tied" in rec.comparison and "fewer cores" in rec.comparison
    assert "shown within 5% of the best estimate" in rec.comparison
    assert "tie rule" in _by_label(rec)["beta fp32 w2t2"].reason


def test_a_tie_the_data_do_not_show_within_the_margin_keeps_the_better_estimate():
    """41.2 vs 40 req/s with +-3% intervals: tied (they overlap, 3% apart), but the smaller one may
    be 7% slower (0.93 at the combined interval's low end): fewer cores does not buy that risk."""
    small = make_trial("alpha", capacity_rps=40, workers=1, threads=2, noise=0.03)
    big = make_trial("beta", capacity_rps=41.2, workers=2, threads=2, noise=0.03)
    rec = recommend([big, small], Constraints(objective="throughput"))
    assert rec.winner.backend == "beta"
    assert rec.tied_with == [_by_label(rec)["alpha fp32 w1t2"].key]
    assert "statistically tied" in rec.comparison and "the better estimate kept" in rec.comparison
    assert re.search(r"down to 0\.9[0-4]\dx", rec.comparison), rec.comparison
    assert "the better estimate kept" in _by_label(rec)["alpha fp32 w1t2"].reason


def test_overlapping_intervals_beyond_the_tie_margin_keep_the_better_estimate():
    """46 vs 40 req/s (15%) with +-10% intervals overlap, but a tie may give up at most 5%."""
    simple = make_trial("alpha", capacity_rps=40, workers=1, threads=2, noise=0.10)
    faster = make_trial("beta", capacity_rps=46, workers=2, threads=2, noise=0.10)
    rec = recommend([simple, faster], Constraints(objective="throughput"))
    assert rec.winner.backend == "beta" and rec.tied_with == []  # fewer cores does not buy 15%
    assert "not beyond the noise" in rec.comparison and "at most 5%" in rec.comparison
    assert re.search(r"by 1[34]%", rec.comparison), rec.comparison


def test_p99_against_the_baseline_compares_both_at_16_clients():
    """A slow baseline's operating point queues 16 deep: its p99 there says nothing about the winner's
    at one client. Both are compared at 16 clients, and without that point at the operating points."""
    rec = recommend([make_trial("eager", capacity_rps=10), make_trial("beta", capacity_rps=60)])
    winner, base = rec.winner, _by_label(rec)["eager fp32 w1t2"]
    assert winner.p99_change_at_c16 and winner.c16_p99_ms and base.c16_p99_ms
    assert winner.p99_change_pct == pytest.approx((winner.c16_p99_ms / base.c16_p99_ms - 1) * 100)
    no_c16 = [
        t.model_copy(update={"c16_index": None})
        for t in (make_trial("eager", capacity_rps=10), make_trial("beta", capacity_rps=60))
    ]
    plain = recommend(no_c16).winner
    assert not plain.p99_change_at_c16 and "at 16 clients" not in (plain.vs_baseline or "")


def test_a_winner_ahead_on_unpaired_points_says_not_paired_with_both_intervals():
    """Intervals of points measured at different times omit the drift between them: no "beyond the
    noise" without a paired runoff (tests/recommend/test_ties.py has the paired case)."""
    slow = make_trial("alpha", capacity_rps=40)
    fast = make_trial("beta", capacity_rps=60, workers=2, threads=2)
    rec = recommend([slow, fast], Constraints(objective="throughput"))
    assert rec.winner.backend == "beta" and rec.tied_with == []
    assert "beyond the noise" not in rec.comparison and "not paired" in rec.comparison
    assert re.search(r"\d+\.\d.\d+\.\d req/s", rec.comparison), rec.comparison  # both intervals shown
    assert rec.winner.throughput_ci is not None
    assert rec.winner.throughput_ci.low < rec.winner.throughput_rps < rec.winner.throughput_ci.high


def test_cost_intervals_follow_from_the_throughput_interval(cpu_trials: list[TrialRecord]):
    winner = recommend(cpu_trials).winner
    usd = winner.usd_per_hour
    assert winner.cost_per_1m_ci.low == pytest.approx(usd / (winner.throughput_ci.high * 3600) * 1e6)
    assert winner.cost_per_1m_ci.high == pytest.approx(usd / (winner.throughput_ci.low * 3600) * 1e6)


def test_select_point_skips_unusable_points():
    trial = make_trial("eager", capacity_rps=20)
    peak = trial.peak_index
    points = list(trial.points)
    points[peak] = points[peak].model_copy(update={"stable": False})
    unstable_peak = trial.model_copy(update={"points": points})
    index, why = select_point(unstable_peak, None)
    assert why is None and index != peak and unstable_peak.points[index].stable
    assert select_point(trial.model_copy(update={"points": []}), None) == (None, "no load points recorded")


def test_ties_are_broken_deterministically():
    a = make_trial("alpha", capacity_rps=40)
    b = a.model_copy(
        update={"trial_id": "b", "candidate": a.candidate.model_copy(update={"backend": "beta"})}
    )
    bigger = a.model_copy(
        update={
            "trial_id": "c",
            "candidate": a.candidate.model_copy(update={"backend": "aardvark", "workers": 2}),
        }
    )
    for order in ([a, b, bigger], [bigger, b, a]):
        rec = recommend(order)
        assert [ev.backend for ev in rec.evaluations] == ["alpha", "beta", "aardvark"]
        assert "tied with alpha fp32 w1t2" in rec.evaluations[1].reason
        assert rec.tied_with and "statistically tied" in rec.comparison


def test_all_rejected_study_gives_a_clear_message():
    trials = [
        make_trial("openvino-int8", "int8", status="rejected", reason="top-1 0.5 < 0.75"),
        make_trial("compile", status="failed", reason="crashed under load"),
    ]
    rec = recommend(trials, Constraints(p99_ms=50))
    assert rec.winner is None
    assert rec.headline == (
        "No candidate can be recommended: none of the 2 trials qualifies "
        "(1 x failed trial; 1 x parity failed)."
    )
    assert recommend([]).headline == "No candidate can be recommended: the study has no trials."


def test_pareto_front_members_are_not_dominated(cpu_trials: list[TrialRecord]):
    rec = recommend(cpu_trials, Constraints(objective="p99"))
    front = pareto_front(rec.evaluations)
    assert {e.key for e in front} == {e.key for e in rec.evaluations if e.pareto}
    for ev in rec.evaluations:
        if ev.eligible and not ev.pareto:
            assert ev.reason.startswith("dominated by")


def test_price_given_at_report_time_wins_and_no_price_falls_back_to_throughput():
    unpriced = MachineInfo(label="laptop")
    trials = [
        make_trial("eager", capacity_rps=16, machine=unpriced),
        make_trial("openvino", "bf16", capacity_rps=47, machine=unpriced),
    ]
    rec = recommend(trials)
    assert rec.objective_used == "throughput" and rec.notes and rec.winner.cost_per_1m is None
    priced = recommend(trials, price=PriceOverride(usd_per_hour=0.3286, instance="inf1 (implied)"))
    assert priced.objective_used == "cost"
    assert priced.winner.price_source == "given at report time (inf1 (implied))"
    assert priced.winner.cost_per_1m == pytest.approx(0.3286 / (priced.winner.throughput_rps * 3600) * 1e6)


def test_capacity_plan_per_candidate(cpu_trials: list[TrialRecord]):
    rec = recommend(cpu_trials, target_rps=1000, headroom=0.25)
    for ev in rec.evaluations:
        if ev.eligible:
            assert ev.capacity.instances * ev.throughput_rps * 0.75 >= 1000
            assert (ev.capacity.instances - 1) * ev.throughput_rps * 0.75 < 1000
            assert ev.capacity.monthly_usd == pytest.approx(
                ev.capacity.instances * C5_XLARGE.price_per_hour * 730
            )
        else:
            assert ev.capacity is None


def test_no_p99_change_is_claimed_from_points_too_small_for_a_p99_interval():
    """146 requests cannot show a p99, so "-86% p99" from them is no finding: such points carry no
    p99 interval, and the change against the baseline leaves p99 out."""

    def few_requests(trial: TrialRecord) -> TrialRecord:
        points = [p.model_copy(update={"p99_ci": None}) for p in trial.points]
        return trial.model_copy(update={"points": points})

    trials = [
        few_requests(make_trial("eager", capacity_rps=10)),
        few_requests(make_trial("beta", capacity_rps=60)),
    ]
    rec = recommend(trials)
    assert rec.winner.throughput_x is not None and rec.winner.p99_change_pct is None
    assert "p99" not in (rec.winner.vs_baseline or "")
    assert "p99" in (
        recommend(
            [make_trial("eager", capacity_rps=10), make_trial("beta", capacity_rps=60)]
        ).winner.vs_baseline
        or ""
    )
