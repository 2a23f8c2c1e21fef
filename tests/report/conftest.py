"""Study folders built from real TrialRecords (see report_factory) for the report tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploybench.results import TrialRecord
from report.report_factory import cpu_study_trials, write_study


@pytest.fixture
def cpu_trials() -> list[TrialRecord]:
    return cpu_study_trials()


@pytest.fixture
def study_dir(tmp_path: Path, cpu_trials: list[TrialRecord]) -> Path:
    return write_study(tmp_path / "study", cpu_trials)
