"""Which candidate of a study to export: the one asked for, else the recommended one, never one that
failed parity or accuracy.

The recommendation is recomputed exactly as `deploybench report` does (recommend/rank.py over the study's
trials and constraints), so "the recommended candidate" means the same thing in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deploybench.pricing.catalogue import load_catalogue
from deploybench.recommend.rank import recommend
from deploybench.recommend.records import Evaluation, Recommendation
from deploybench.report import study_constraints
from deploybench.report.study import StudyData
from deploybench.results import TrialRecord

GATE_PREFIXES = ("parity failed", "accuracy:")  # rank.py: reasons for an unfaithful variant


class ExportError(ValueError):
    """The study or the candidate cannot be exported; the message says why in one line."""


@dataclass
class Choice:
    """The trial to export, how it was judged, and anything the user must be told about the choice."""

    trial: TrialRecord
    evaluation: Evaluation
    recommendation: Recommendation
    notes: list[str] = field(default_factory=list)


def _gate(trial: TrialRecord, evaluation: Evaluation) -> None:
    """Refuse what failed parity or accuracy, or was never served, with the recorded reason."""
    if evaluation.reason.startswith(GATE_PREFIXES):
        raise ExportError(f"{trial.trial_id}: refused: {evaluation.reason}")
    if trial.parity is not None and trial.parity.verdict == "rejected":
        raise ExportError(f"{trial.trial_id}: refused: parity failed: {trial.parity.reason}")
    if trial.status != "ok":
        raise ExportError(f"{trial.trial_id}: refused: {trial.status} trial: {trial.reason or 'no reason'}")


def _by_id(study: StudyData, rec: Recommendation, trial_id: str) -> tuple[TrialRecord, Evaluation]:
    for index, trial in enumerate(study.trials):
        if trial.trial_id == trial_id:
            return trial, next(e for e in rec.evaluations if e.trial_index == index)
    known = ", ".join(t.trial_id for t in study.trials) or "none"
    raise ExportError(f"{study.root}: no trial {trial_id!r}; trials: {known}")


def choose_candidate(study: StudyData, trial_id: str | None, exportable: set[str]) -> Choice:
    """The asked-for trial, else the best-ranked eligible one whose backend can be exported."""
    rec = recommend(
        study.trials,
        study_constraints(study),
        catalogue=load_catalogue(),
        search_records=study.search_records,
    )
    if trial_id is not None:
        trial, evaluation = _by_id(study, rec, trial_id)
        _gate(trial, evaluation)
        notes = (
            []
            if evaluation.eligible
            else [f"not eligible under the study's constraints: {evaluation.reason}"]
        )
        return Choice(trial, evaluation, rec, notes)
    if rec.winner is None:
        raise ExportError(f"{study.root}: {rec.headline} Pick one with --candidate TRIAL_ID.")
    ranked = [e for e in rec.evaluations if e.eligible]
    chosen = next((e for e in ranked if e.backend in exportable), None)
    if chosen is None:
        raise ExportError(
            f"{study.root}: no eligible candidate has an exportable backend ({', '.join(sorted(exportable))})"
        )
    notes = []
    if chosen is not rec.winner:
        notes.append(
            f"the recommended {rec.winner.label} runs {rec.winner.backend} in deploybench's own process "
            f"and has no standalone artifact; exported the best-ranked one that has: {chosen.label}"
        )
    trial = study.trials[chosen.trial_index]
    _gate(trial, chosen)
    return Choice(trial, chosen, rec, notes)
