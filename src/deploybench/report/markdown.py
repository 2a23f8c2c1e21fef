"""summary.md: the recommendation and the ranking as Markdown, for a pull request or a wiki page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deploybench.recommend.records import Recommendation, ranked_rows
from deploybench.report import tables, traffic
from deploybench.results import TrialRecord

fmt = tables.fmt


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _ranking(rec: Recommendation) -> list[str]:
    multi = len(rec.machines) > 1
    head = [
        "#",
        "candidate",
        *(["machine"] if multi else []),
        "status",
        "req/s",
        "p50 ms",
        "p99 ms",
        "$ / 1M",
        "tx / hour",
        "vs baseline",
        "why",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    shown, folded = ranked_rows(rec)
    for row in (tables.evaluation_row(ev) for ev in shown):
        cells = [
            str(row["rank"] or "—"),
            row["candidate"] + (" ◆" if row["pareto"] else ""),
            *([row["machine"]] if multi else []),
            row["status"],
            row["throughput_text"],
            fmt(row["p50_ms"]),
            row["p99_text"],
            "$" + row["cost_text"] if row["cost_per_1m_usd"] is not None else "—",
            fmt(row["transactions_per_hour"], ",.0f"),
            row["vs_baseline"] or "—",
            row["reason"],
        ]
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    return lines + (["", _escape(folded)] if folded else [])


def _machines(rec: Recommendation) -> list[str]:
    """Per machine: not compiled (eager) against its best, as the seed's cross-machine table."""
    rows = tables.machine_rows(rec)
    if len(rec.machines) < 2 or not rows:
        return []
    head = [
        "machine",
        "deployment",
        "candidate",
        "req/s",
        "p99 ms",
        "$ / 1M",
        "tx / hour",
        "x eager",
        "cost x best",
    ]
    lines = ["", "## By machine", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            row["machine"],
            row["kind"],
            row["candidate"],
            fmt(row["throughput_rps"]),
            fmt(row["p99_ms"]),
            fmt(row["cost_per_1m_usd"], ".2f", "$"),
            fmt(row["transactions_per_hour"], ",.0f"),
            fmt(row["throughput_x"], ".1f", "", "x"),
            fmt(row["cost_vs_winner"], ".1f", "", "x"),
        ]
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    return lines


def _parity(trials: Sequence[TrialRecord]) -> list[str]:
    rows = tables.parity_rows(trials)
    if not rows:
        return ["No parity reports recorded."]
    lines = ["| backend | precision | verdict | top-1 | min cosine | reason |", "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [
            r["backend"],
            r["precision"],
            r["label"],
            fmt(r["top1_agreement"], ".1%"),
            fmt(r["cosine_min"], ".5f"),
            r["reason"],
        ]
        lines.append("| " + " | ".join(_escape(str(c)) for c in cells) + " |")
    return lines


def _stacks(rec: Recommendation) -> list[str]:
    """Serving stacks side by side on each backend more than one of them served."""
    groups = tables.stack_comparison(rec)
    if not groups:
        return []
    lines = ["", "## Serving stacks side by side", ""]
    for group in groups:
        lines += [
            f"**{group['backend']}**" + (f" on {group['machine']}" if len(rec.machines) > 1 else ""),
            "",
            "| stack | protocol | candidate | at | peak req/s | p99 at peak ms | $ / 1M | peak MB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in group["rows"]:
            flag = "" if row["peak_trusted"] else " ~"
            cells = [
                row["stack"],
                row["protocol"],
                row["candidate"],
                row["basis"],
                fmt(row["peak_rps"]) + flag,
                fmt(row["peak_p99_ms"]),
                fmt(row["cost_per_1m_usd"], ".2f", "$"),
                fmt(row["peak_rss_mb"], ".0f"),
            ]
            lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
        lines.append("")
    lines.append("~ no trusted peak: the best point measured (unstable or client-bound).")
    return lines


def _accuracy(rec: Recommendation, trials: Sequence[TrialRecord]) -> list[str]:
    rows = tables.accuracy_rows(trials, rec)
    if not rows:
        return []
    head = (
        "| backend | precision | n | top-1 | top-5 | drop pp | 95% CI pp | McNemar p | verdict | excluded |"
    )
    lines = [
        "",
        "## Accuracy on labelled data",
        "",
        f"Images: {rows[0]['data']}",
        "",
        head,
        "|" + "---|" * 10,
    ]
    for r in rows:
        cells = [
            r["backend"], r["precision"], str(r["n"]), fmt(r["top1"], ".1%"), fmt(r["top5"], ".1%"),
            fmt(r["drop_pp"], "+.1f"), r["interval"] or "—", fmt(r["p_value"], ".2g"), r["verdict"],
            r["excluded"] or "—",
        ]  # fmt: skip
        lines.append("| " + " | ".join(_escape(str(c)) for c in cells) + " |")
    return lines


def _capacity(rec: Recommendation) -> list[str]:
    if rec.target_rps is None:
        return []
    lines = [
        "",
        f"## Capacity plan for {rec.target_rps:g} req/s peak (headroom {rec.headroom:.0%})",
        "",
        "| candidate | instances | $ / month |",
        "|---|---|---|",
    ]
    for ev in rec.evaluations:
        if ev.capacity is not None:
            lines.append(
                f"| {_escape(ev.label)} | {ev.capacity.instances} | "
                f"{fmt(ev.capacity.monthly_usd, ',.0f', '$')} |"
            )
    return lines


def _method(rec: Recommendation) -> str:
    method = next((ev.throughput_ci.method for ev in rec.evaluations if ev.throughput_ci), None)
    return method or "none recorded"


def render_markdown(
    title: str, rec: Recommendation, trials: Sequence[TrialRecord], warnings: Sequence[str] = ()
) -> str:
    c = rec.constraints
    lines = [f"# {title}", "", f"**{rec.headline}**", ""]
    lines += [line for w in warnings for line in (f"> **Warning:** {_escape(w)}", "")]
    if rec.random_weights:
        lines += [
            "> **Warning: random weights.** Timings and cost are valid; predictions and parity top-1 "
            "agreement are not meaningful. Rerun with pretrained weights.",
            "",
        ]
    lines += [
        f"- Weights: {', '.join(rec.weights) or '—'}",
        f"- Machines: {', '.join(rec.machines) or '—'}",
        f"- Constraints: p99 <= {fmt(c.p99_ms, 'g', '', ' ms')}, throughput >= "
        f"{fmt(c.min_throughput, 'g', '', ' req/s')}, "
        f"top-1 drop <= {fmt(c.max_accuracy_drop, 'g', '', ' pp')}"
        f"{' and not significant' if c.reject_significant_drop else ''}; objective {c.objective} "
        f"(ranked by {rec.objective_used})",
        f"- Cost formula: {tables.COST_FORMULA}",
        *([f"- Against its real runner-up: {rec.runner_up}"] if rec.runner_up else []),
        *([f"- Against the next ranked candidate: {rec.comparison}"] if rec.comparison else []),
        *[f"- Note: {n}" for n in rec.notes],
        "",
        "## Ranking",
        "",
        *_ranking(rec),
        "",
        "◆ on the Pareto front (cost per 1M, p99, throughput). "
        "Baseline: eager PyTorch fp32 on deploybench's server, 1 worker, batch 1. "
        f"In brackets: 95% intervals ({_method(rec)}).",
        *_stacks(rec),
        *_machines(rec),
        *_capacity(rec),
        "",
        "## Parity against eager fp32",
        "",
        *_parity(trials),
        *_accuracy(rec, trials),
        "",
    ]
    return "\n".join(lines)


def _search_counts(machine: str, counts: dict[str, Any]) -> str:
    get = counts.get
    return (
        f"- {machine}: {get('space', 0)} candidates in the space, {get('probed', 0)} probed "
        f"(concurrency {get('probe_concurrency', '—')}), {get('run_longer', 0)} run longer, "
        f"{get('fully_measured', 0)} fully measured"
    )


def search_section(searches: Sequence[dict[str, Any]]) -> str:
    """How much of the candidate space each study's search measured, and why it dropped the rest."""
    lines: list[str] = []
    for search in searches:
        for machine, counts in (search.get("machines") or {}).items():
            lines.append(_search_counts(machine, counts))
            lines += [
                f"  - {_escape(tid)}: {_escape(why)}" for tid, why in (counts.get("dropped") or {}).items()
            ]
    if not lines:
        return ""
    return "\n".join(["", "## Search (successive halving over served measurements)", "", *lines, ""])


def _cells(row: dict[str, Any]) -> list[str]:
    return [
        str(row["rank"] or "—"),
        row["candidate"],
        row["rate_text"] + ("" if row["open_loop"] else " †"),
        f"{row['target_utilisation']:.0%}",
        f"{row['target_rps']:.1f}",
        row["instances"],
        str(row["fixed_instances"]),
        fmt(row["monthly_autoscaled"], ",.0f", "$"),
        fmt(row["monthly_fixed"], ",.0f", "$"),
        fmt(row["usd_per_1m"], ".2f", "$"),
        fmt(row["sim_p99_ms"]),
        "—" if row["sim_late"] is None else f"{row['sim_late']:,} / {row['sim_shed']:,}",
    ]


PLAN_HEAD = [
    "#", "candidate", "req/s per instance: planned of found", "target util.", "target req/s",
    "instances", "fixed",
    "$ / month autoscaled", "$ / month fixed", "$ / 1M at traffic", "sim. worst-hour p99 ms",
    "sim. late / shed",
]  # fmt: skip


def traffic_section(rec: Recommendation, policy_files: Sequence[str] = ()) -> list[str]:
    """The Markdown section (empty without --traffic)."""
    if rec.traffic is None:
        return []
    lines = ["", "## Your traffic", "", f"**{rec.traffic_line}**", ""]
    rows = traffic.plan_rows(rec)
    if rows:
        lines += ["| " + " | ".join(PLAN_HEAD) + " |", "|" + "---|" * len(PLAN_HEAD)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in rows]
        lines.append("")
    unverified = traffic.unverified_lines(rec)
    if unverified:
        lines += ["† not verified by an open-loop verdict:", "", *[f"- {u}" for u in unverified], ""]
    hourly = traffic.hourly_rows(rec)
    if hourly:
        lines += [
            "| hour | traffic req/s | instances | $ | sim. p99 ms | sim. late | sim. shed |",
            "|" + "---|" * 7,
        ]
        for h in hourly:
            cells = [
                str(h["hour"]), fmt(h["traffic_rps"]), str(h["instances"]), fmt(h["usd"], ".2f", "$"),
                fmt(h["sim_p99_ms"]), fmt(h["sim_late"], ",.0f"), fmt(h["sim_shed"], ",.0f"),
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Assumptions:", "", *[f"- {line}" for line in traffic.assumptions(rec)]]
    if policy_files:
        lines += ["", f"Autoscaling policies for the winner: {', '.join(policy_files)}"]
    return lines
