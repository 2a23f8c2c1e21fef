"""The report's Plotly figures: curves per candidate, cost bars, Pareto scatter, latency breakdown.

Each function returns a plain go.Figure; html.py inlines Plotly's JS once and embeds them all, so the
report works offline. Colours follow the ranking order so a candidate has one colour in every plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.colors import qualitative

from deploybench.recommend.records import Evaluation, Recommendation
from deploybench.results import LoadPoint, TrialRecord

PALETTE = [*qualitative.Plotly, *qualitative.D3, *qualitative.Dark24]
WINNER, FRONT, OTHER = "#1a9850", "#4575b4", "#abb3bd"
NETWORK = "network, HTTP and client"
LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 20, "t": 36, "b": 50},
    "font": {"family": "Inter, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
    "legend": {"font": {"size": 11}, "orientation": "h", "yanchor": "top", "y": -0.22, "x": 0},
    "hoverlabel": {"namelength": -1},
}


@dataclass
class FigureSpec:
    """A figure and the words around it in the report."""

    div_id: str
    title: str
    caption: str
    figure: go.Figure


def _name(ev: Evaluation, rec: Recommendation) -> str:
    return f"{ev.label} @ {ev.machine}" if len(rec.machines) > 1 else ev.label


def _measured(rec: Recommendation, trials: Sequence[TrialRecord]) -> list[tuple[Evaluation, TrialRecord]]:
    return [(ev, trials[ev.trial_index]) for ev in rec.evaluations if trials[ev.trial_index].points]


def _flags(point: LoadPoint) -> str:
    if point.trusted:
        return "ok"
    kinds = dict.fromkeys(flag.split(":")[0] for flag in point.flags)
    return ", ".join(kinds) or ("client-bound" if point.client_bound else "unstable")


def _error_bars(points: Sequence[LoadPoint], interval: str, value: str) -> dict[str, object]:
    """Plotly's asymmetric error bars from each point's 95% interval (none where it has none)."""
    highs, lows = [], []
    for point in points:
        ci = getattr(point, interval)
        figure = point.throughput_rps if value == "throughput" else point.latency.p99_ms
        highs.append(ci.high - figure if ci else 0.0)
        lows.append(figure - ci.low if ci else 0.0)
    return {"type": "data", "symmetric": False, "array": highs, "arrayminus": lows, "thickness": 1}


def _empty(fig: go.Figure, message: str) -> go.Figure:
    fig.add_annotation(
        text=message,
        showarrow=False,
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        font={"size": 14, "color": "#616e7c"},
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def throughput_vs_concurrency(rec: Recommendation, trials: Sequence[TrialRecord]) -> go.Figure:
    fig = go.Figure(layout=LAYOUT)
    colours = _colours(rec)
    for ev, trial in _measured(rec, trials):
        points = sorted((p for p in trial.points if p.concurrency), key=lambda p: p.concurrency or 0)
        if not points:
            continue
        fig.add_trace(
            go.Scatter(
                x=[p.concurrency for p in points],
                y=[p.throughput_rps for p in points],
                error_y=_error_bars(points, "throughput_ci", "throughput"),
                mode="lines+markers",
                name=_name(ev, rec),
                line={"color": colours[ev.key]},
                marker={"symbol": ["circle" if _flags(p) == "ok" else "circle-open" for p in points]},
                customdata=[[_flags(p), p.latency.p99_ms] for p in points],
                hovertemplate="c=%{x}: %{y:.1f} req/s, p99 %{customdata[1]:.1f} ms (%{customdata[0]})",
            )
        )
    fig.update_xaxes(title="concurrent requests", type="log", dtick=0.30103)
    fig.update_yaxes(title="throughput (req/s)", rangemode="tozero")
    return fig if fig.data else _empty(fig, "no closed-loop load points recorded")


def p99_vs_throughput(rec: Recommendation, trials: Sequence[TrialRecord]) -> go.Figure:
    fig = go.Figure(layout=LAYOUT)
    colours = _colours(rec)
    for ev, trial in _measured(rec, trials):
        points = sorted(trial.points, key=lambda p: p.throughput_rps)
        fig.add_trace(
            go.Scatter(
                x=[p.throughput_rps for p in points],
                y=[p.latency.p99_ms for p in points],
                error_y=_error_bars(points, "p99_ci", "p99"),
                mode="lines+markers",
                name=_name(ev, rec),
                line={"color": colours[ev.key]},
                customdata=[[p.concurrency or p.target_rate, _flags(p)] for p in points],
                hovertemplate="%{x:.1f} req/s, p99 %{y:.1f} ms (load %{customdata[0]}, %{customdata[1]})",
            )
        )
    budget = rec.constraints.p99_ms
    if budget is not None and fig.data:
        top = max((x for trace in fig.data for x in trace.x), default=1)
        fig.add_trace(
            go.Scatter(
                x=[0, top],
                y=[budget, budget],
                mode="lines",
                name=f"p99 budget {budget:g} ms",
                line={"dash": "dash", "color": "#d73027"},
                hoverinfo="skip",
            )
        )
    fig.update_xaxes(title="throughput (req/s)", rangemode="tozero")
    fig.update_yaxes(title="p99 latency (ms, log scale)", type="log", dtick="D2")
    return fig if fig.data else _empty(fig, "no load points recorded")


def _bar_colour(ev: Evaluation, rec: Recommendation) -> str:
    if rec.winner is not None and ev.key == rec.winner.key:
        return WINNER
    return FRONT if ev.pareto else OTHER


def cost_bars(rec: Recommendation) -> go.Figure:
    """Cost per 1M at each candidate's operating point; throughput when no price is known."""
    priced = [e for e in rec.evaluations if e.cost_per_1m is not None]
    use_cost = bool(priced)
    rows = priced if use_cost else [e for e in rec.evaluations if e.throughput_rps is not None]
    rows = sorted(rows, key=lambda e: e.cost_per_1m if use_cost else -(e.throughput_rps or 0))
    values = [e.cost_per_1m if use_cost else e.throughput_rps for e in rows]
    fig = go.Figure(layout={**LAYOUT, "showlegend": False})
    if not use_cost and rows:
        fig.update_layout(
            title={
                "text": "No price known: throughput shown instead "
                "(pass --instance NAME or --price-per-hour X)",
                "font": {"size": 12},
            }
        )
    fig.add_trace(
        go.Bar(
            y=[_name(e, rec) for e in rows],
            x=values,
            orientation="h",
            marker={"color": [_bar_colour(e, rec) for e in rows]},
            text=[f"${v:.2f}" if use_cost else f"{v:.1f} req/s" for v in values],
            textposition="outside",
            cliponaxis=False,
        )
    )
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(title="USD per 1M inferences" if use_cost else "req/s", rangemode="tozero")
    fig.update_layout(height=max(320, 60 + 34 * len(rows)))
    return fig if rows else _empty(fig, "no candidate has an operating point")


def _colours(rec: Recommendation) -> dict[str, str]:
    """One colour per candidate, by ranking order, shared by every per-candidate plot."""
    return {ev.key: PALETTE[i % len(PALETTE)] for i, ev in enumerate(rec.evaluations)}


def pareto_scatter(rec: Recommendation) -> go.Figure:
    """p99 against cost (or throughput without prices); the front is joined, the winner starred."""
    rows = [e for e in rec.evaluations if e.eligible]
    use_cost = any(e.cost_per_1m is not None for e in rows)
    rows = [e for e in rows if (e.cost_per_1m if use_cost else e.throughput_rps) is not None]

    def y(e: Evaluation) -> float:
        return (e.cost_per_1m if use_cost else e.throughput_rps) or 0.0

    fig = go.Figure(layout=LAYOUT)
    front = sorted((e for e in rows if e.pareto), key=lambda e: e.p99_ms or 0)
    fig.add_trace(
        go.Scatter(
            x=[e.p99_ms for e in front],
            y=[y(e) for e in front],
            mode="lines",
            name="Pareto front",
            line={"color": FRONT, "dash": "dot"},
            hoverinfo="skip",
        )
    )
    scale = max((e.throughput_rps or 0 for e in rows), default=1) or 1
    colours = _colours(rec)
    for ev in sorted(rows, key=lambda e: -(e.rank or 0)):  # the winner drawn last, on top
        symbol = "star" if ev.rank == 1 else ("circle" if ev.pareto else "circle-open")
        fig.add_trace(
            go.Scatter(
                x=[ev.p99_ms],
                y=[y(ev)],
                mode="markers",
                name=_name(ev, rec) + (" (dominated)" if not ev.pareto else ""),
                marker={
                    "size": 12 + 26 * (ev.throughput_rps or 0) / scale,
                    "color": colours[ev.key],
                    "symbol": symbol,
                    "line": {"width": 2, "color": colours[ev.key]},
                },
                customdata=[[ev.throughput_rps]],
                hovertemplate="p99 %{x:.1f} ms, %{y:.3f}, %{customdata[0]:.1f} req/s",
            )
        )
    fig.update_xaxes(title="p99 latency at the operating point (ms)", rangemode="tozero")
    fig.update_yaxes(title="USD per 1M inferences" if use_cost else "throughput (req/s)", rangemode="tozero")
    return fig if rows else _empty(fig, "no candidate meets the constraints")


def _breakdown(point: LoadPoint) -> dict[str, float]:
    """Server-Timing components (means, ms) and the rest of the client-seen mean latency."""
    timing = dict(point.server_timing_ms)
    total = timing.pop("total", None)
    parts = {k: max(0.0, v) for k, v in timing.items()}
    if total is not None and total > sum(parts.values()):
        parts["server other"] = total - sum(parts.values())
    parts[NETWORK] = max(0.0, point.latency.mean_ms - (total or sum(parts.values())))
    return parts


def latency_breakdown(rec: Recommendation, trials: Sequence[TrialRecord]) -> go.Figure:
    """Stacked mean latency per candidate at its operating point ('(peak)': its busiest point when none)."""
    rows: list[tuple[str, dict[str, float]]] = []
    for ev, trial in _measured(rec, trials):
        index, where = ev.point_index, ""
        if index is None:  # no operating point: show its busiest point, and say so
            index = trial.peak_index
            if index is None:
                index = max(range(len(trial.points)), key=lambda i: trial.points[i].throughput_rps)
            where = " (peak)"
        if trial.points[index].server_timing_ms:
            rows.append((_name(ev, rec) + where, _breakdown(trial.points[index])))
    components = list(dict.fromkeys(name for _, parts in rows for name in parts))
    fig = go.Figure(layout=LAYOUT)
    for i, component in enumerate(components):
        colour = "#d9d9d9" if component == NETWORK else PALETTE[i % len(PALETTE)]
        fig.add_trace(
            go.Bar(
                y=[name for name, _ in rows],
                x=[parts.get(component, 0.0) for _, parts in rows],
                name=component,
                orientation="h",
                marker={"color": colour},
                hovertemplate=f"{component}: %{{x:.2f}} ms<extra>%{{y}}</extra>",
            )
        )
    fig.update_layout(barmode="stack", height=max(320, 80 + 34 * len(rows)))
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(title="mean latency (ms)")
    return fig if rows else _empty(fig, "no Server-Timing recorded")


def fleet_over_time(rec: Recommendation) -> go.Figure:
    """Instances each hour for the top candidates' plans (the traffic on a second axis)."""
    fig = go.Figure(
        layout={**LAYOUT, "yaxis2": {"overlaying": "y", "side": "right", "title": "traffic req/s"}}
    )
    plans = [ev for ev in rec.evaluations if ev.traffic_plan is not None][:3]
    for ev, colour in zip(plans, PALETTE, strict=False):
        plan = ev.traffic_plan
        assert plan is not None
        cost = [None if plan.usd_per_hour is None else n * plan.usd_per_hour for n in plan.instances_per_hour]
        fig.add_trace(
            go.Scatter(
                x=list(range(len(plan.instances_per_hour))),
                y=plan.instances_per_hour,
                name=_name(ev, rec),
                line={"shape": "hv", "color": colour},
                customdata=cost,
                hovertemplate="hour %{x}: %{y} instances, $%{customdata:.2f}/h<extra></extra>",
            )
        )
    if rec.traffic is not None:
        rates = rec.traffic.hourly_rates
        fig.add_trace(
            go.Scatter(
                x=list(range(len(rates))),
                y=rates,
                name="traffic (req/s)",
                yaxis="y2",
                line={"dash": "dot", "color": OTHER},
            )
        )
    fig.update_xaxes(title="hour of the profile")
    fig.update_yaxes(title="instances", rangemode="tozero")
    return fig if plans else _empty(fig, "no candidate has a fleet plan")


def report_figures(rec: Recommendation, trials: Sequence[TrialRecord]) -> list[FigureSpec]:
    traffic = [
        FigureSpec(
            "fig-fleet",
            "Instances over the day at your traffic",
            "The autoscaled plan's instances each hour (hover: the hour's cost) for the top candidates; "
            "dotted: the traffic.",
            fleet_over_time(rec),
        )
    ]
    return traffic * (rec.traffic is not None) + [
        FigureSpec(
            "fig-throughput",
            "Throughput vs concurrency",
            "Bars: 95% intervals. Open markers: untrusted points (unstable, client-bound or invalid; "
            "never operating points).",
            throughput_vs_concurrency(rec, trials),
        ),
        FigureSpec(
            "fig-p99",
            "p99 vs throughput",
            "Each point is one load level, bars its 95% p99 interval; the dashed line is the p99 "
            "budget when one is set.",
            p99_vs_throughput(rec, trials),
        ),
        FigureSpec(
            "fig-cost",
            "Cost per 1M inferences",
            "At each candidate's operating point. Green: "
            "recommended; blue: on the Pareto front; grey: dominated.",
            cost_bars(rec),
        ),
        FigureSpec(
            "fig-pareto",
            "Pareto front",
            "No candidate on the front is beaten on cost, p99 and throughput at once by another.",
            pareto_scatter(rec),
        ),
        FigureSpec(
            "fig-breakdown",
            "Latency breakdown",
            "Mean per request, from the server's "
            "Server-Timing header; the rest is network, HTTP and the client.",
            latency_breakdown(rec, trials),
        ),
    ]
