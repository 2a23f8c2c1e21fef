"""`deploybench export`: write a study's chosen candidate as a deployable SageMaker model.tar.gz."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from deploybench.cli.app import app, console, fail
from deploybench.report.study import StudyReadError

if TYPE_CHECKING:
    from deploybench.export.roundtrip import RoundTrip


def _fmt(value: float | None, spec: str, unit: str) -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _interval(trip: RoundTrip) -> str:
    return "" if trip.ratio_low is None else f", {trip.ratio_low:.3f}-{trip.ratio_high:.3f} at 95%"


@app.command()
def export(
    study_dir: Annotated[Path, typer.Argument(help="study folder written by `deploybench run`")],
    out: Annotated[Path, typer.Option("--out", help="archive to write, e.g. model.tar.gz")],
    candidate: Annotated[
        str | None, typer.Option("--candidate", help="trial id to export (default: the recommended one)")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="artifact cache the study used (default: ~/.cache/deploybench)")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="write what was exported as JSON")] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="container (deploybench's own server, SageMaker bring-your-own-container), "
            "sagemaker-pytorch (the SageMaker PyTorch/TorchServe container) or sagemaker-rayserve "
            "(AWS's Ray Serve container, with a KubeRay RayService); default: the target of the "
            "stack the trial was measured on"
        ),
    ] = None,
    round_trip: Annotated[
        bool,
        typer.Option(
            "--round-trip/--no-round-trip",
            help="serve the archive as its target runs it beside the trial's configuration (16 clients, "
            "alternating rounds) and write that measured figure into its README",
        ),
    ] = True,
) -> None:
    """Package a candidate for deployment (its stack's target by default), measured as exported."""
    # lazy: export imports torch; every other command starts without it
    from deploybench.export import ExportError, export_candidate
    from deploybench.export.roundtrip import RoundTripPlan

    try:
        result = export_candidate(
            study_dir,
            out,
            trial_id=candidate,
            cache_dir=cache_dir,
            target=target,
            round_trip=RoundTripPlan() if round_trip else None,
            on_progress=lambda message: console.print(f"[cyan]•[/] {message}", soft_wrap=True),
        )
    except (ExportError, StudyReadError, ValueError) as exc:  # ModelLoadError is a ValueError
        raise fail(str(exc)) from None
    unchanged = (
        "deploybench's server runs it" if result.target == "container" else "your own handler, unchanged"
    )
    runtime = result.runtime or unchanged
    console.print(
        f"exported [bold]{result.trial_id}[/] ({result.backend}, {result.precision}, {runtime}) to "
        f"[bold]{result.archive}[/]: {len(result.files)} files, artifact {result.artifact}",
        soft_wrap=True,
    )
    throughput, p99 = _fmt(result.throughput_rps, ",.1f", " req/s"), _fmt(result.p99_ms, ",.1f", " ms")
    cost = _fmt(result.cost_per_1m, ",.2f", " USD")
    console.print(
        f"measured: {throughput}, p99 {p99}, cost per 1M {cost}; parity {result.parity}", soft_wrap=True
    )
    console.print(f"target: [bold]{result.target}[/] ({result.target_reason})", soft_wrap=True)
    if result.env:
        console.print("environment: " + " ".join(f"{k}={v}" for k, v in result.env.items()), soft_wrap=True)
    trip = result.round_trip
    if trip is not None:
        console.print(
            f"measured as exported: {trip.exported_rps:,.1f} req/s vs the trial's configuration "
            f"{trip.trial_rps:,.1f} req/s in the same run (ratio {trip.ratio:.3f}{_interval(trip)}, "
            f"{trip.clients} clients, "
            f"{trip.rounds} rounds of {trip.duration_s:g} s, {trip.errors} errors)",
            soft_wrap=True,
        )
    for note in result.notes:
        console.print(f"  note: {note}", soft_wrap=True)
    console.print(f"serve it: deploybench serve {result.archive}", soft_wrap=True)
    if json_path is not None:
        json_path.write_text(json.dumps(result.model_dump(mode="json"), indent=2))
