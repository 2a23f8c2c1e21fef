"""Which candidate `deploybench export` takes: the recommended one by default, the best exportable one
when the winner has no standalone artifact, and never one that failed parity or was not measured."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.report_factory import cpu_study_trials, make_trial, write_study
from typer.testing import CliRunner

from deploybench.cli import app
from deploybench.export.choose import ExportError, choose_candidate
from deploybench.export.runtimes import exportable_backends
from deploybench.report.study import load_study


def test_default_is_the_recommended_candidate(tmp_path: Path) -> None:
    study = load_study(write_study(tmp_path / "s", cpu_study_trials()))
    choice = choose_candidate(study, None, exportable_backends())
    assert choice.trial.trial_id == choice.recommendation.winner.trial_id  # type: ignore[union-attr]
    assert choice.trial.candidate.backend == "openvino-int8" and choice.notes == []


def test_a_winner_without_artifact_gives_way_to_the_best_exportable_one(tmp_path: Path) -> None:
    trials = [
        make_trial("eager", capacity_rps=16),
        make_trial("onnxruntime", capacity_rps=25),
        make_trial("eager-bf16", "bf16", capacity_rps=60),
    ]
    choice = choose_candidate(load_study(write_study(tmp_path / "s", trials)), None, exportable_backends())
    assert choice.recommendation.winner.backend == "eager-bf16"  # type: ignore[union-attr]
    assert choice.trial.candidate.backend == "onnxruntime"
    assert "no standalone artifact" in choice.notes[0]


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ("onnxruntime-int8-s8s8", "refused: parity failed: top-1 agreement 0.61 < 0.75"),
        ("compile", "refused: failed trial: server did not answer /ping within 60 s"),
    ],
)
def test_failed_candidates_are_refused_with_their_reason(tmp_path: Path, backend: str, expected: str) -> None:
    trials = cpu_study_trials()
    study = load_study(write_study(tmp_path / "s", trials))
    trial_id = next(t.trial_id for t in trials if t.candidate.backend == backend)
    with pytest.raises(ExportError, match=expected):
        choose_candidate(study, trial_id, exportable_backends() | {backend})
    result = CliRunner().invoke(
        app, ["export", str(study.root), "--candidate", trial_id, "--out", str(tmp_path / "m.tar.gz")]
    )
    assert result.exit_code == 2 and expected.split(":")[1].strip() in result.output
    assert not (tmp_path / "m.tar.gz").exists()


def test_unknown_trial_lists_the_known_ones(tmp_path: Path) -> None:
    study = load_study(write_study(tmp_path / "s", [make_trial("onnxruntime")]))
    with pytest.raises(ExportError, match=r"no trial 'nope'; trials: onnxruntime@cpu"):
        choose_candidate(study, "nope", exportable_backends())
