"""max_accuracy_drop: the recommendation excludes variants that lose too much top-1, and says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers.report_factory import write_study

from deploybench.config import Constraints
from deploybench.recommend.rank import recommend
from deploybench.report import write_report
from deploybench.results import TrialRecord
from deploybench.variants.accuracy import Outcome, absolute_report, compare

N = 500


def _outcome(right: int, shift: int = 0) -> Outcome:
    """N images, the first `right` answered correctly (shifted by `shift` to make disagreements)."""
    top1 = np.zeros(N, dtype=bool)
    top1[shift : shift + right] = True
    return Outcome(top1, top1.copy())


EAGER = _outcome(400)
REPORTS = {
    "eager": absolute_report(EAGER, "500 test images"),
    "onnxruntime-int8": compare(EAGER, _outcome(398, 1), "500 test images"),  # -0.4 pp, not significant
    "openvino-int8": compare(EAGER, _outcome(380), "500 test images"),  # -4 pp, 20 one-sided disagreements
}


def _with_accuracy(trials: list[TrialRecord]) -> list[TrialRecord]:
    """Scored: eager and the two int8 backends; the others carry no accuracy (never scored)."""
    return [t.model_copy(update={"accuracy": REPORTS.get(t.candidate.backend)}) for t in trials]


def test_the_paired_reports_say_what_users_need() -> None:
    small, large = REPORTS["onnxruntime-int8"], REPORTS["openvino-int8"]
    assert small.drop_pp is not None and round(small.drop_pp, 1) == 0.4 and not small.significant
    assert small.summary.startswith("loses 0.4 pp (drop +0.4 pp, 95% CI [")
    assert "not significant at n=500" in small.summary
    assert large.significant and large.p_value is not None and large.p_value < 1e-5
    assert large.drop_low_pp is not None and 2 < large.drop_low_pp < 4 < (large.drop_high_pp or 0)


def test_max_accuracy_drop_excludes_and_explains(cpu_trials: list[TrialRecord]) -> None:
    trials = _with_accuracy(cpu_trials)
    unconstrained = recommend(trials)
    assert unconstrained.winner is not None and unconstrained.winner.backend == "openvino-int8"
    rec = recommend(trials, Constraints(max_accuracy_drop=1.0))
    assert rec.winner is not None and rec.winner.backend == "onnxruntime-int8"
    excluded = [ev for ev in rec.evaluations if ev.backend == "openvino-int8"]
    assert excluded and all(not ev.eligible for ev in excluded)
    assert all(ev.reason.startswith("accuracy: top-1 drop 4.0 pp > max 1 pp (95% CI [") for ev in excluded)
    # backends never scored cannot be shown to meet the constraint; eager is the reference itself
    reasons = {ev.backend: ev.reason for ev in rec.evaluations}
    assert reasons["torchscript"].startswith("accuracy: not measured")
    assert not reasons["eager"].startswith("accuracy")


def test_a_significant_drop_is_excluded_when_asked(cpu_trials: list[TrialRecord]) -> None:
    trials = _with_accuracy(cpu_trials)
    rec = recommend(trials, Constraints(max_accuracy_drop=10.0, reject_significant_drop=True))
    reasons = {ev.label: ev.reason for ev in rec.evaluations}
    assert reasons["openvino-int8 int8 w1t2"].startswith(
        "accuracy: significant top-1 drop 4.0 pp (McNemar p="
    )
    assert rec.winner is not None and rec.winner.backend == "onnxruntime-int8"


def test_the_report_shows_the_accuracy_table_and_the_exclusions(tmp_path: Path, cpu_trials) -> None:
    study = write_study(tmp_path / "study", _with_accuracy(cpu_trials))
    result = write_report(study, Constraints(max_accuracy_drop=1.0))
    markdown = result.paths["markdown"].read_text()
    assert "## Accuracy on labelled data" in markdown and "500 test images" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| openvino-int8 | int8 | 500"))
    assert "+4.0" in row and "| significant |" in row and "top-1 drop 4.0 pp > max 1 pp" in row
    html = result.paths["html"].read_text()
    assert 'id="accuracy"' in html and "excluded by the recommendation" in html
