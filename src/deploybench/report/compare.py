"""Merge studies taken on different machines into one ranked comparison and report.

This is the accelerator comparison the project grew from (cost-effectiveness of Inferentia, a T4 and
a CPU instance), for the user's own model: each study is labelled with its instance, priced, and all
trials are ranked together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from deploybench.config import Constraints
from deploybench.pricing.catalogue import PriceCatalogue, UnknownInstanceError, load_catalogue
from deploybench.recommend.rank import recommend
from deploybench.report import ReportResult, study_constraints, write_outputs
from deploybench.report.study import StudyData, StudyReadError, load_study
from deploybench.results import MachineInfo, TrialRecord


def machine_name(machine: MachineInfo) -> str:
    return machine.instance or machine.label


def _priced(machine: MachineInfo, catalogue: PriceCatalogue) -> MachineInfo:
    """Fill a missing price from the catalogue while the instance name is still the catalogue's."""
    if machine.price_per_hour is not None or not machine.instance:
        return machine
    try:
        price = catalogue.lookup(machine.instance).usd_per_hour
    except (UnknownInstanceError, ValueError):
        return machine
    return machine.model_copy(update={"price_per_hour": price})


def label_studies(studies: Sequence[StudyData], catalogue: PriceCatalogue) -> list[TrialRecord]:
    """All trials, each machine priced and named; a name two studies share gets the folder name added."""
    owners: Counter[str] = Counter()
    for study in studies:
        for name in {machine_name(t.machine) for t in study.trials}:
            owners[name] += 1
    merged: list[TrialRecord] = []
    for study in studies:
        for trial in study.trials:
            machine = _priced(trial.machine, catalogue)
            name = machine_name(machine)
            if owners[name] > 1:
                unique = f"{name} ({study.name})"
                machine = machine.model_copy(update={"label": unique, "instance": unique})
            merged.append(trial.model_copy(update={"machine": machine}))
    return merged


def _check_models(studies: Sequence[StudyData]) -> None:
    models = {t.model for s in studies for t in s.trials}
    if len(models) > 1:
        studies[0].warnings.append(
            f"the studies measured different models ({', '.join(sorted(models))}): "
            "the ranking compares unlike workloads"
        )


def compare_studies(
    study_dirs: Sequence[Path],
    out_dir: Path,
    constraints: Constraints | None = None,
    *,
    prices_files: list[Path] | None = None,
    target_rps: float | None = None,
    headroom: float = 0.0,
    json_path: Path | None = None,
) -> ReportResult:
    """Rank the trials of several study folders together and write one report into out_dir."""
    if not study_dirs:
        raise StudyReadError("compare needs at least one study folder")
    studies = [load_study(Path(d)) for d in study_dirs]
    _check_models(studies)
    catalogue = load_catalogue(prices_files)
    trials = label_studies(studies, catalogue)
    rec = recommend(
        trials,
        constraints or study_constraints(studies[0]),
        catalogue=catalogue,
        target_rps=target_rps,
        headroom=headroom,
        search_records=[record for study in studies for record in study.search_records],
    )
    return write_outputs(Path(out_dir), rec, trials, studies, compare=True, json_path=json_path)
