"""Reports on a study folder: report.html (self-contained), summary.md, results.csv, optional JSON.

`write_report` is what `deploybench run` calls at the end and what `deploybench report` runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field, ValidationError

from deploybench.config import Constraints, StrictModel
from deploybench.pricing.catalogue import PriceOverride, load_catalogue
from deploybench.pricing.machine import machine_warnings, override_warnings
from deploybench.recommend.rank import recommend
from deploybench.recommend.records import Recommendation
from deploybench.report.deployable import deployable_rows, deployable_section, verdicts_by_trial
from deploybench.report.study import StudyData, StudyReadError, load_study
from deploybench.results import TrialRecord
from deploybench.traffic.fleet import FleetSettings
from deploybench.traffic.profile import TrafficProfile

HTML_NAME, MARKDOWN_NAME, CSV_NAME = "report.html", "summary.md", "results.csv"

__all__ = [
    "ReportResult",
    "StudyReadError",
    "load_study",
    "recommend_study",
    "study_constraints",
    "write_outputs",
    "write_report",
]


class ReportResult(StrictModel):
    """Where the report files were written, and the recommendation they show."""

    paths: dict[str, Path]
    recommendation: Recommendation
    warnings: list[str] = Field(default_factory=list)

    @property
    def html_path(self) -> Path:
        return self.paths["html"]


def study_constraints(study: StudyData) -> Constraints:
    """The constraints the study was run with (study.yaml), or the defaults when it has none."""
    raw = study.config.get("constraints") if isinstance(study.config, dict) else None
    try:
        return Constraints.model_validate(raw or {})
    except ValidationError:
        study.warnings.append("study.yaml: constraints unreadable; defaults used")
        return Constraints()


def _title(trials: Sequence[TrialRecord], machines: int, compare: bool) -> str:
    models = sorted({t.model for t in trials})
    model = ", ".join(models) or "empty study"
    if compare:
        return f"deploybench compare: {model} on {machines} machine{'s' * (machines != 1)}"
    return f"deploybench report: {model}"


def write_outputs(
    out_dir: Path,
    rec: Recommendation,
    trials: Sequence[TrialRecord],
    studies: Sequence[StudyData],
    *,
    compare: bool = False,
    json_path: Path | None = None,
) -> ReportResult:
    """Render report.html, summary.md and results.csv (and JSON if asked) into out_dir."""
    # lazy: plotly and pandas load only when a report is written
    from deploybench.report.html import ReportContext, render_html
    from deploybench.report.markdown import render_markdown, search_section, traffic_section
    from deploybench.report.tables import recommendation_json, results_frame
    from deploybench.report.traffic import write_policy_files

    out_dir.mkdir(parents=True, exist_ok=True)
    warnings = [*machine_warnings(trials), *(w for s in studies for w in s.warnings)]
    title = _title(trials, len(rec.machines), compare)
    paths = {"html": out_dir / HTML_NAME, "markdown": out_dir / MARKDOWN_NAME, "csv": out_dir / CSV_NAME}
    policies = write_policy_files(out_dir, rec)
    paths.update({f"policy:{p.name}": p for p in policies})
    names = [str(p.relative_to(out_dir)) for p in policies]
    verdicts = verdicts_by_trial(rec.evaluations, trials)
    deployable = deployable_rows(rec.evaluations, verdicts)
    context = ReportContext(title, rec, trials, studies, warnings, names, deployable)
    paths["html"].write_text(render_html(context), encoding="utf-8")
    markdown = render_markdown(title, rec, trials, warnings) + "\n".join(traffic_section(rec, names))
    markdown += search_section([s.search for s in studies])
    markdown += deployable_section(rec.evaluations, verdicts)
    paths["markdown"].write_text(markdown, encoding="utf-8")
    results_frame(rec).to_csv(paths["csv"], index=False)
    if json_path is not None:
        paths["json"] = json_path
        data = {
            "paths": {k: str(v) for k, v in paths.items()},
            "warnings": warnings,
            "recommendation": recommendation_json(rec),
        }
        for ev_data in [*data["recommendation"]["evaluations"], data["recommendation"]["winner"] or {}]:
            if "trial_id" in ev_data:  # each target: null where it deploys the candidate as measured
                ev_data["deployable_as"] = verdicts.get(ev_data["trial_id"])
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return ReportResult(paths=paths, recommendation=rec, warnings=warnings)


def recommend_study(
    study_dir: Path,
    constraints: Constraints | None = None,
    price_override: PriceOverride | float | None = None,
    *,
    prices_files: list[Path] | None = None,
    target_rps: float | None = None,
    headroom: float = 0.0,
    traffic: TrafficProfile | None = None,
    fleet: FleetSettings | None = None,
) -> tuple[StudyData, Recommendation]:
    """The study read and its recommendation, writing nothing (write_report's arguments)."""
    study = load_study(Path(study_dir))
    if isinstance(price_override, int | float):
        price_override = PriceOverride(usd_per_hour=float(price_override))
    catalogue = load_catalogue(prices_files)
    rec = recommend(
        study.trials,
        constraints or study_constraints(study),
        price=price_override,
        catalogue=catalogue,
        target_rps=target_rps,
        headroom=headroom,
        search_records=study.search_records,
        traffic=traffic,
        fleet=fleet,
    )
    study.warnings.extend(override_warnings(price_override, study.trials, catalogue))
    return study, rec


def write_report(
    study_dir: Path,
    constraints: Constraints | None = None,
    price_override: PriceOverride | float | None = None,
    *,
    prices_files: list[Path] | None = None,
    target_rps: float | None = None,
    headroom: float = 0.0,
    json_path: Path | None = None,
    traffic: TrafficProfile | None = None,
    fleet: FleetSettings | None = None,
) -> ReportResult:
    """Recommend over one study folder and write its report files into that folder.

    constraints None: those in study.yaml. price_override: replaces every trial's recorded price
    (a float is USD per hour). traffic: plan each candidate's fleet for it (rank by its monthly bill).
    """
    study, rec = recommend_study(
        study_dir,
        constraints,
        price_override,
        prices_files=prices_files,
        target_rps=target_rps,
        headroom=headroom,
        traffic=traffic,
        fleet=fleet,
    )
    return write_outputs(study.root, rec, study.trials, [study], json_path=json_path)
