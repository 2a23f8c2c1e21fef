"""report.html: one self-contained file (Plotly's JS inlined once) that works offline.

The page is a Jinja2 template (templates/report.html.j2) filled with the recommendation, the tables
of tables.py and the figures of figures.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

import plotly.offline
import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from deploybench.pricing.catalogue import HOURS_PER_MONTH
from deploybench.recommend.records import Recommendation, ranked_rows
from deploybench.report import tables, traffic
from deploybench.report.figures import report_figures
from deploybench.report.study import StudyData
from deploybench.results import TrialRecord

PLOT_CONFIG = {"displaylogo": False, "responsive": True}


@dataclass
class ReportContext:
    """What one report shows: a recommendation over trials from one or more study folders."""

    title: str
    recommendation: Recommendation
    trials: Sequence[TrialRecord]
    studies: Sequence[StudyData]
    warnings: list[str] = field(default_factory=list)
    policy_files: list[str] = field(default_factory=list)
    deployable: list[dict[str, str]] = field(default_factory=list)  # report/deployable.py's rows


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("deploybench.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = tables.fmt
    return env


def deploybench_version() -> str:
    try:
        return version("deploybench")
    except PackageNotFoundError:
        return "unknown"


def _prices_used(rec: Recommendation) -> list[dict[str, object]]:
    seen: dict[tuple[str, float | None], dict[str, object]] = {}
    for ev in rec.evaluations:
        key = (ev.machine, ev.usd_per_hour)
        seen.setdefault(
            key, {"machine": ev.machine, "usd_per_hour": ev.usd_per_hour, "source": ev.price_source}
        )
    return list(seen.values())


def _study_sections(studies: Sequence[StudyData]) -> list[dict[str, object]]:
    sections = []
    for study in studies:
        columns, rows = tables.variant_rows(study.variants)
        sections.append(
            {
                "name": study.name,
                "path": str(study.root.resolve()),
                "environment": tables.flatten(study.environment),
                "config": yaml.safe_dump(study.config, sort_keys=False) if study.config else "",
                "variant_columns": columns,
                "variant_rows": rows,
            }
        )
    return sections


def _traffic_context(rec: Recommendation, policy_files: list[str]) -> dict[str, object] | None:
    if rec.traffic is None:
        return None
    return {
        "line": rec.traffic_line,
        "plans": traffic.plan_rows(rec),
        "unverified": traffic.unverified_lines(rec),
        "hourly": traffic.hourly_rows(rec),
        "assumptions": traffic.assumptions(rec),
        "policies": policy_files,
    }


def render_html(ctx: ReportContext) -> str:
    rec = ctx.recommendation
    figures = report_figures(rec, ctx.trials)
    plots = [
        {
            "id": spec.div_id,
            "title": spec.title,
            "caption": spec.caption,
            "html": spec.figure.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=spec.div_id,
                default_height=f"{spec.figure.layout.height or 420}px",
                config=PLOT_CONFIG,
            ),
        }
        for spec in figures
    ]
    template = _environment().get_template("report.html.j2")
    return template.render(
        title=ctx.title,
        rec=rec,
        winner=rec.winner,
        rows=[tables.evaluation_row(ev) for ev in ranked_rows(rec)[0]],
        never_served=ranked_rows(rec)[1],
        machine_rows=tables.machine_rows(rec),
        stack_groups=tables.stack_comparison(rec),
        interval_method=next(
            (ev.throughput_ci.method for ev in rec.evaluations if ev.throughput_ci), "none recorded"
        ),
        plots=plots,
        parity=tables.parity_rows(ctx.trials),
        accuracy=tables.accuracy_rows(ctx.trials, rec),
        prices=_prices_used(rec),
        studies=_study_sections(ctx.studies),
        warnings=ctx.warnings,
        traffic=_traffic_context(rec, ctx.policy_files),
        deployable=ctx.deployable,
        cost_formula=tables.COST_FORMULA,
        tx_formula=tables.TX_FORMULA,
        hours_per_month=HOURS_PER_MONTH,
        plotly_js=plotly.offline.get_plotlyjs(),
        generated_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=deploybench_version(),
    )
