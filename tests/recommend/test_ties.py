"""The paired runoff in the recommendation: candidates measured side by side are ranked and tied by
their window-by-window ratio, not by points measured minutes apart (through host drift)."""

from __future__ import annotations

import math

import pytest
from helpers.report_factory import make_trial

from deploybench.config import Constraints
from deploybench.recommend.rank import recommend
from deploybench.recommend.ties import paired_ratio
from deploybench.results import Interval, RunoffSample, TrialRecord

# The host slows down 12% over the runoff: every candidate's rounds drift together.
DRIFT = [1.00, 0.96, 0.92, 0.88]
STEADY = [1.004, 0.996, 1.006, 0.994]  # the rounds' wobble of a quiet host: ratios within ~1%


def sample(level: float, wobble: list[float] | None = None, group: str = "round 2 at t") -> RunoffSample:
    wobble = wobble or [1.0] * len(DRIFT)
    rps = [level * d * w for d, w in zip(DRIFT, wobble, strict=True)]
    return RunoffSample(group=group, concurrency=16, window_s=3.0, rps=rps)


def test_the_paired_ratio_cancels_drift_and_its_interval_follows_the_rounds_spread() -> None:
    steady = paired_ratio(sample(30.0), sample(33.0))
    assert steady is not None and steady.ratio == pytest.approx(1.1) and steady.rounds == 4
    assert steady.low == pytest.approx(1.1) and steady.high == pytest.approx(1.1)  # drift cancels exactly
    noisy = paired_ratio(sample(30.0), sample(30.0, [1.02, 0.98, 1.03, 0.97]))
    assert noisy is not None and noisy.low < 1.0 < noisy.high
    logs = [math.log(w) for w in (1.02, 0.98, 1.03, 0.97)]
    mean = sum(logs) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 3)
    assert math.log(noisy.high) - mean == pytest.approx(3.182446 * sd / 2, rel=1e-4)  # t(0.975, 3)
    assert paired_ratio(sample(30.0), sample(30.0, group="round 2 at another time")) is None
    assert paired_ratio(sample(30.0), sample(0.0)) is None  # a round that answered nothing


def test_candidates_of_one_runoff_are_tied_by_it_though_their_own_points_are_far_apart() -> None:
    """Finals measured minutes apart: 36 vs 32 req/s with tight intervals (not tied on their own).
    Side by side they are within 2%, the paired interval reaches 1 and stays above 0.95: tied, and
    the tie rule picks batch 1."""
    early = make_trial("alpha", capacity_rps=36.0, workers=2, threads=1, max_batch_size=4, noise=0.02)
    late = make_trial("beta", capacity_rps=32.0, workers=2, threads=1, noise=0.02)
    alone = recommend([early, late], Constraints(objective="throughput"))
    assert alone.winner.backend == "alpha" and alone.tied_with == []  # the drift decides on its own
    paired = [
        early.model_copy(update={"runoff": sample(31.0, STEADY)}),
        late.model_copy(update={"runoff": sample(30.5, STEADY[::-1])}),
    ]
    rec = recommend(paired, Constraints(objective="throughput"))
    assert rec.winner.backend == "beta" and rec.tied_with  # no batching, by the tie rule
    assert "paired runoff" in rec.comparison and "statistically tied" in rec.comparison
    assert "no batching" in rec.comparison
    assert rec.winner.reason.startswith("recommended: chosen by the tie rule over alpha")  # not "highest"
    alpha = next(ev for ev in rec.evaluations if ev.backend == "alpha")
    assert "tied in the paired runoff" in alpha.reason and "intervals overlap" not in alpha.reason
    wider = [
        early.model_copy(update={"runoff": sample(31.0, [1.01, 0.99, 1.02, 0.98])}),
        late.model_copy(update={"runoff": sample(30.5, [0.99, 1.01, 0.98, 1.02])}),
    ]
    rec = recommend(wider, Constraints(objective="throughput"))  # tied, but may be 7% slower
    assert rec.winner.backend == "alpha" and rec.tied_with and "the better estimate kept" in rec.comparison


def test_a_runoff_that_sees_the_later_candidate_faster_ranks_it_first() -> None:
    early = make_trial("alpha", capacity_rps=36.0, workers=2, threads=1, noise=0.02)
    late = make_trial("beta", capacity_rps=32.0, workers=2, threads=1, noise=0.02)
    paired = [
        early.model_copy(update={"runoff": sample(30.0)}),
        late.model_copy(update={"runoff": sample(33.0, [1.0, 1.01, 0.99, 1.0])}),
    ]
    rec = recommend(paired, Constraints(objective="throughput"))
    assert rec.winner.backend == "beta" and rec.tied_with == []
    assert "beyond the noise" in rec.comparison and "paired runoff" in rec.comparison


def test_the_runoff_is_not_used_under_a_p99_bound_it_did_not_measure() -> None:
    trial = make_trial("alpha", capacity_rps=36.0).model_copy(update={"runoff": sample(30.0)})
    assert recommend([trial]).evaluations[0].runoff is not None
    assert recommend([trial], Constraints(p99_ms=10_000)).evaluations[0].runoff is None


def test_the_speed_up_over_an_unstable_eager_baseline_comes_from_their_paired_runoff() -> None:
    """Eager's own point at 16 clients was unstable in every default study here (its 40-request
    windows are 7 s long and catch the drift), so no speed-up was printed. In the runoff the two were
    measured side by side: the ratio of their rounds is the speed-up, and the cost change follows."""
    eager = make_trial("eager", capacity_rps=6.0, concurrencies=(16,), stable=False)
    eager = eager.model_copy(update={"peak_index": None})  # as the study records it: no peak claimed
    pick = make_trial("alpha", "int8", capacity_rps=36.0, workers=2, threads=1)
    alone = recommend([eager, pick])
    assert alone.winner.throughput_x is None and alone.baseline_key is None  # nothing trusted to compare
    paired = [
        eager.model_copy(update={"runoff": sample(6.0, [1.05, 0.95, 1.04, 0.96])}),
        pick.model_copy(update={"runoff": sample(33.0)}),
    ]
    rec = recommend(paired)
    winner = rec.winner
    assert winner.backend == "alpha" and rec.baseline_key is not None
    assert winner.throughput_x == pytest.approx(5.5, rel=0.01) and winner.throughput_x_paired == 4
    assert winner.throughput_x_ci.low < 5.5 < winner.throughput_x_ci.high
    assert winner.cost_change_pct == pytest.approx((1 / winner.throughput_x - 1) * 100)
    assert "in a paired runoff at 16 clients" in winner.vs_baseline and "vs eager baseline" in rec.headline
    bare = {"instance": None, "price_per_hour": None}  # unpriced: no cost to change
    unpriced = [t.model_copy(update={"machine": t.machine.model_copy(update=bare)}) for t in paired]
    free = recommend(unpriced, Constraints(objective="throughput")).evaluations[0]
    assert free.usd_per_hour is None and free.throughput_x_paired == 4 and free.cost_change_pct is None


@pytest.mark.parametrize(
    ("leaner_mb", "winner", "why"),
    [
        # 1% less: the allocator's noise, the better estimate stays
        (1376.0, "alpha", "tie rule: equal on every tie criterion (memory within 10%)"),
        (1200.0, "beta", "less memory: 1,200 MB vs 1,389 MB"),  # 14% less: a reason
    ],
)
def test_less_memory_decides_a_tie_only_beyond_its_margin(leaner_mb: float, winner: str, why: str) -> None:
    """Two tied int8 runtimes, equal on machine, cores and batching (study N: 1,376 vs 1,389 MB)."""
    ahead = make_trial("alpha", capacity_rps=33.0, workers=2, threads=1, max_batch_size=4, noise=0.02)
    behind = make_trial("beta", capacity_rps=32.0, workers=2, threads=1, max_batch_size=4, noise=0.02)
    paired = [
        ahead.model_copy(update={"runoff": sample(31.0, STEADY), "peak_rss_mb": 1389.0}),
        behind.model_copy(update={"runoff": sample(30.7, STEADY[::-1]), "peak_rss_mb": leaner_mb}),
    ]
    rec = recommend(paired, Constraints(objective="throughput"))
    assert rec.winner.backend == winner and rec.tied_with
    assert "statistically tied" in rec.comparison and why in rec.comparison


def _with_between_run_term(trial: TrialRecord, rel_sd: float) -> TrialRecord:
    """The trial's intervals as they read on a machine with a between-run record."""

    def carrying(interval: Interval | None) -> Interval | None:
        return interval and interval.model_copy(update={"between_run_rel_sd": rel_sd})

    points = [
        p.model_copy(update={"throughput_ci": carrying(p.throughput_ci), "p99_ci": carrying(p.p99_ci)})
        for p in trial.points
    ]
    return trial.model_copy(update={"points": points})


@pytest.mark.parametrize("objective", ["throughput", "cost"])
def test_unpaired_points_lead_beyond_the_noise_only_with_the_between_run_term(objective: str) -> None:
    """36 vs 32 req/s, measured minutes apart, intervals apart: their own seconds cannot speak for the
    drift between them ("not paired"); intervals that carry this machine's between-run term can."""
    early = make_trial("alpha", capacity_rps=36.0, workers=2, threads=1, noise=0.02)
    late = make_trial("beta", capacity_rps=32.0, workers=2, threads=1, noise=0.02)
    bare = recommend([early, late], Constraints(objective=objective))
    assert "not paired" in bare.comparison and "beyond the noise" not in bare.comparison
    assert "deploybench load --repeat" in bare.comparison
    half = recommend([_with_between_run_term(early, 0.01), late], Constraints(objective=objective))
    assert "not paired" in half.comparison  # one side without the term: still not comparable
    both = [_with_between_run_term(early, 0.01), _with_between_run_term(late, 0.01)]
    rec = recommend(both, Constraints(objective=objective))
    assert rec.winner.backend == "alpha" and "not paired" not in rec.comparison
    assert "beats the next ranked" in rec.comparison and "beyond the noise" in rec.comparison
    assert "between-run term do not overlap" in rec.comparison
