"""The end-of-study rows: intervals with the headline figures, every untrusted point with its reason."""

from __future__ import annotations

from helpers.report_factory import make_trial

from deploybench.study.summary import trial_row


def test_rows_carry_intervals_and_the_flags_with_their_numbers() -> None:
    trial = make_trial("eager", capacity_rps=20)
    flagged = trial.points[1].model_copy(
        update={
            "stable": False,
            "flags": ["unstable: throughput max/min 1.23 over the last 3 windows (limit 1.10)"],
        }
    )
    trial = trial.model_copy(update={"points": [trial.points[0], flagged, *trial.points[2:]]})
    row = trial_row(trial)
    low, high = row["peak"]["rps_ci"]
    assert low < row["peak"]["rps"] < high
    assert row["peak"]["p99_ci"][0] < row["peak"]["p99_ms"] < row["peak"]["p99_ci"][1]
    assert row["points"] == len(trial.points)
    assert row["flagged"] == [{"point": "c=2", "flags": [flagged.flags[0]]}]
