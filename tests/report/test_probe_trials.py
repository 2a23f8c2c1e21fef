"""A search's probe records (status probe, KEY#probe) are evidence, never a ranked or listed candidate."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.report_factory import cpu_study_trials, make_trial, write_study

from deploybench.recommend.rank import recommend
from deploybench.report import write_report
from deploybench.report.study import load_study
from deploybench.results import TrialRecord


def _probe_of_a_faster_candidate() -> TrialRecord:
    probe = make_trial("openvino-int8", "int8", capacity_rps=500.0, workers=2, threads=1, max_batch_size=8)
    return probe.model_copy(
        update={"trial_id": f"{probe.trial_id}#probe", "status": "probe", "reason": "search probe: 500 req/s"}
    )


def test_a_probe_is_never_ranked_even_when_it_is_the_fastest_measurement() -> None:
    trials = [*cpu_study_trials(), _probe_of_a_faster_candidate()]
    rec = recommend(trials)
    assert rec.winner is not None and not rec.winner.trial_id.endswith("#probe")
    (probe,) = [ev for ev in rec.evaluations if ev.trial_id.endswith("#probe")]
    assert not probe.eligible and probe.rank is None and probe.reason.startswith("probe trial")


def test_the_study_reader_keeps_probes_out_of_the_report(tmp_path: Path) -> None:
    root = write_study(tmp_path / "study", [*cpu_study_trials(), _probe_of_a_faster_candidate()])
    study = load_study(root)
    assert len(study.trials) == len(cpu_study_trials())
    assert not any(t.status == "probe" for t in study.trials)


def test_the_summary_says_how_much_of_the_space_the_search_measured(tmp_path: Path) -> None:
    root = write_study(tmp_path / "study", cpu_study_trials())
    why = "dropped after probe: 96.1 req/s, 28% below the best 134.0 req/s (round 1 of 3)"
    counts = {"space": 16, "probed": 15, "run_longer": 5, "fully_measured": 3, "probe_concurrency": 16}
    search = {"machines": {"c5.xlarge": {**counts, "dropped": {"onnxruntime@cpu/w2t1/b1d0": why}}}}
    (root / "search.json").write_text(json.dumps(search))
    write_report(root)
    summary = (root / "summary.md").read_text()
    assert "## Search" in summary and "16 candidates in the space, 15 probed (concurrency 16)" in summary
    assert why in summary
