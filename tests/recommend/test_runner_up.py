"""The headline names the winner's real runner-up, paired, and the accuracy a cheaper precision costs."""

from __future__ import annotations

from helpers.report_factory import make_trial

from deploybench.config import Constraints
from deploybench.recommend.rank import recommend
from deploybench.recommend.records import ranked_rows
from deploybench.report.tables import evaluation_row, stack_comparison
from deploybench.results import AccuracyReport, RunoffSample, TrialRecord

ROUNDS = [1.00, 0.97, 1.02, 0.95, 1.01, 0.99]  # the host's drift, shared by every contender


def runoff(level: float, wobble: float = 0.0) -> RunoffSample:
    rps = [level * d * (1 + wobble * (-1) ** i) for i, d in enumerate(ROUNDS)]
    return RunoffSample(group="round 2 at t", concurrency=16, window_s=2.5, rps=rps)


def round2(trial: TrialRecord, sample: RunoffSample) -> TrialRecord:
    """The search's round-2 record of a contender the runoff dropped (status probe, never ranked)."""
    return trial.model_copy(
        update={
            "trial_id": trial.trial_id + "#round2",
            "status": "probe",
            "runoff": sample,
            "points": [],
            "peak_index": None,
            "c16_index": None,
        }
    )


def default_study() -> tuple[list[TrialRecord], list[TrialRecord]]:
    """As the default study ends: the winner and the eager baseline fully measured; the dropped
    onnxruntime-int8 contender only in round 2, at 0.92x the winner side by side."""
    winner = make_trial("openvino-int8", "int8", capacity_rps=32.0, workers=2, threads=1, max_batch_size=4)
    eager = make_trial("eager", capacity_rps=8.0)
    dropped = make_trial(
        "onnxruntime-int8", "int8", capacity_rps=30.0, workers=2, threads=1, max_batch_size=4
    )
    skipped = dropped.model_copy(
        update={
            "status": "skipped",
            "reason": "dropped after the longer run",
            "points": [],
            "peak_index": None,
            "c16_index": None,
        }
    )
    final = [
        winner.model_copy(update={"runoff": runoff(32.0)}),
        eager.model_copy(update={"runoff": runoff(8.0)}),
        skipped,
    ]
    probes = [round2(dropped, runoff(32.0 * 0.92, 0.01)), round2(eager, runoff(8.0))]
    return final, probes


def test_the_runner_up_is_the_best_other_contender_of_the_winners_runoff_not_the_baseline() -> None:
    final, probes = default_study()
    rec = recommend(final, Constraints(objective="throughput"), search_records=probes)
    assert rec.winner is not None and rec.winner.backend == "openvino-int8"
    assert rec.runner_up is not None and "onnxruntime-int8" in rec.runner_up
    assert "0.92x the winner's throughput" in rec.runner_up and "paired runoff at 16 clients" in rec.runner_up
    assert "beyond the noise" in rec.runner_up
    assert "onnxruntime-int8" in rec.headline and "eager" not in rec.runner_up
    without = recommend(
        final, Constraints(objective="throughput")
    )  # no round-2 records: only eager ran beside it
    assert without.runner_up is None


def test_a_reduced_precision_winner_states_its_accuracy_or_warns_that_it_was_not_measured() -> None:
    final, probes = default_study()
    rec = recommend(final, Constraints(objective="throughput"), search_records=probes)
    assert "WARNING: int8 accuracy not measured" in rec.headline
    measured = AccuracyReport(
        n=250,
        top1=0.76,
        top5=0.93,
        data="bundled labelled set",
        drop_pp=0.4,
        drop_low_pp=-0.8,
        drop_high_pp=1.6,
    )
    final[0] = final[0].model_copy(update={"accuracy": measured})
    rec = recommend(final, Constraints(objective="throughput"), search_records=probes)
    assert "accuracy top-1 -0.4 pp vs eager fp32 (n=250, 95% CI -1.6 to +0.8) on bundled labelled set" in (
        rec.headline
    )
    fp32 = recommend([make_trial("onnxruntime", capacity_rps=20.0)])
    assert "accuracy" not in fp32.headline  # fp32 is the reference precision


def test_the_stacks_table_shows_deploybench_at_each_other_stacks_knobs_beside_its_best() -> None:
    best = make_trial("openvino-int8", "int8", capacity_rps=32.0, workers=2, threads=1, max_batch_size=4)
    twin = make_trial("openvino-int8", "int8", capacity_rps=27.0)  # 1 x 2, batch 1: the stacks' defaults
    torchserve = make_trial("openvino-int8", "int8", capacity_rps=22.0)
    torchserve = torchserve.model_copy(
        update={
            "trial_id": torchserve.trial_id + ":torchserve",
            "candidate": torchserve.candidate.model_copy(update={"stack": "torchserve"}),
        }
    )
    rec = recommend([best, twin, torchserve], Constraints(objective="throughput"))
    (group,) = stack_comparison(rec)
    rows = {(row["stack"], row["basis"]): row for row in group["rows"]}
    assert set(rows) == {
        ("deploybench", "the best of its searched grid"),
        ("deploybench", "the knobs torchserve was given"),
        ("torchserve", "its default knobs"),
    }
    assert rows["deploybench", "the knobs torchserve was given"]["candidate"] == "openvino-int8 int8 w1t2"


def test_the_stacks_table_pairs_every_finalist_of_another_stacks_grid_with_deploybench() -> None:
    def via(trial: TrialRecord, stack: str) -> TrialRecord:
        candidate = trial.candidate.model_copy(update={"stack": stack})
        return trial.model_copy(update={"trial_id": candidate.key, "candidate": candidate})

    knobs = {"workers": 2, "threads": 1, "max_batch_size": 4}
    best = make_trial("openvino-int8", "int8", capacity_rps=32.0, workers=1, threads=2, max_batch_size=8)
    twin_default = make_trial("openvino-int8", "int8", capacity_rps=27.0)
    twin_grid = make_trial("openvino-int8", "int8", capacity_rps=30.0, **knobs)
    ts_default = via(make_trial("openvino-int8", "int8", capacity_rps=22.0), "torchserve")
    ts_grid = via(make_trial("openvino-int8", "int8", capacity_rps=25.0, **knobs), "torchserve")
    trials = [best, twin_default, twin_grid, ts_default, ts_grid]
    (group,) = stack_comparison(recommend(trials, Constraints(objective="throughput")))
    rows = {(row["stack"], row["candidate"]): row["basis"] for row in group["rows"]}
    assert rows == {
        ("deploybench", "openvino-int8 int8 w1t2 b8/2ms"): "the best of its searched grid",
        ("deploybench", "openvino-int8 int8 w2t1 b4/2ms"): "the knobs torchserve was given",
        ("deploybench", "openvino-int8 int8 w1t2"): "the knobs torchserve was given",
        ("torchserve", "openvino-int8 int8 w2t1 b4/2ms via torchserve"): "a finalist of its searched grid",
        ("torchserve", "openvino-int8 int8 w1t2 via torchserve"): "its default knobs",
    }


def test_a_candidate_the_search_dropped_shows_its_last_rounds_figure_not_a_dash() -> None:
    final, probes = default_study()
    rec = recommend(final, Constraints(objective="throughput"), search_records=probes)
    rows = {row["candidate"]: row for row in map(evaluation_row, rec.evaluations)}
    dropped = rows["onnxruntime-int8 int8 w2t1 b4/2ms"]
    assert dropped["status"] == "skipped" and dropped["search_round"] == "round 2, paired runoff"
    assert (
        dropped["throughput_text"].startswith("29.")
        and "(round 2, paired runoff)" in dropped["throughput_text"]
    )


def test_backends_never_served_fold_into_one_line_with_their_reasons() -> None:
    final, probes = default_study()
    fp32 = make_trial("onnxruntime")
    pruned = fp32.model_copy(
        update={
            "status": "skipped",
            "reason": "pruned: 18.5 images/s in-process",
            "points": [],
            "peak_index": None,
            "c16_index": None,
        }
    )
    rec = recommend([*final, pruned], Constraints(objective="throughput"), search_records=probes)
    shown, folded = ranked_rows(rec)
    assert [ev.backend for ev in shown] == ["openvino-int8", "eager", "onnxruntime-int8"]
    assert folded == "Never served: onnxruntime fp32 w1t2 (skipped trial: pruned: 18.5 images/s in-process)"


def test_an_order_the_runoff_set_says_so_when_a_points_own_reading_says_otherwise() -> None:
    """The runner-up's own peak point (taken at another time) reads cheaper than the winner's, but side
    by side it was slower: the ranking follows the runoff, and the words say which figure decided."""
    fast = make_trial("openvino-int8", "int8", capacity_rps=20.0, workers=2, threads=1, max_batch_size=4)
    slow = make_trial("openvino-int8", "int8", capacity_rps=60.0, workers=2, threads=1)
    trials = [
        fast.model_copy(update={"runoff": runoff(50.0)}),
        slow.model_copy(update={"runoff": runoff(40.0)}),
    ]
    rec = recommend(trials, Constraints(objective="cost"))
    winner, runner_up = rec.evaluations[0], rec.evaluations[1]
    assert winner.max_batch_size == 4 and runner_up.max_batch_size == 1
    assert winner.reason.startswith("recommended: fastest side by side in the paired runoff")
    assert "lowest cost" not in winner.reason
    assert runner_up.reason.startswith("0.80x the throughput of")
    assert "its own peak point reads -" in runner_up.reason and "not paired" in runner_up.reason
