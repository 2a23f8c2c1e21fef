"""`deploybench run --plan-only`: the candidate space and the time plan for a machine, printed or as JSON.

The machine is this one (detected), or named: `--machine INSTANCE` (a catalogue entry: its vCPUs and
GPU), or `--cores N [--gpu NAME]`. A name the catalogue does not know is refused with the closest
ones it does, so a typo never previews some other machine.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from deploybench.cli.app import console, fail
from deploybench.pricing.catalogue import (
    PriceFileError,
    UnknownInstanceError,
    accelerator_model,
    close_matches,
    gpu_models,
    load_catalogue,
)
from deploybench.study.budget import BudgetTooSmallError
from deploybench.study.preview import PlanPreview, plan_preview
from deploybench.study.space import MachineShape, detect_shape
from deploybench.study.spec import StudyConfig


def catalogue_gpu(name: str) -> str:
    """The catalogue's GPU model for `name` ("L4", "nvidia l4"), exactly; else refused with close ones."""
    models = gpu_models(load_catalogue())
    wanted = name.strip().lower().removeprefix("nvidia").strip()
    for model in models:
        if model.lower() == wanted:
            return f"NVIDIA {model}"
    near = close_matches(wanted, models) or models
    raise fail(f"unknown GPU {name!r} (not in the price catalogue); close matches: {', '.join(near)}")


def machine_shape(machine: str | None, cores: int | None, gpu: str | None) -> MachineShape:
    """The shape --plan-only plans for: a catalogue instance, --cores/--gpu, or this machine."""
    if machine is not None:
        if cores is not None or gpu is not None:
            raise fail("--machine names the cores and the GPU: give it alone, or --cores N [--gpu NAME]")
        try:
            entry = load_catalogue().lookup(machine)
        except (UnknownInstanceError, PriceFileError) as exc:
            raise fail(str(exc)) from exc
        if entry.vcpus is None:
            raise fail(f"the catalogue does not say how many vCPUs {entry.instance} has: use --cores N")
        model = accelerator_model(entry.accelerator)
        gpu_name = f"NVIDIA {model}" if model else None
        return MachineShape(
            label=entry.instance,
            cores=entry.vcpus,
            gpu=gpu_name,
            gpus=int(bool(model)),
            memory_gib=entry.memory_gib,
        )
    if cores is None and gpu is None:
        return detect_shape()
    gpu_name = catalogue_gpu(gpu) if gpu is not None else None
    host = cores if cores is not None else detect_shape().cores
    label = f"{host} vCPUs" + (f", 1x {gpu_name}" if gpu_name else "")
    return MachineShape(label=label, cores=host, gpu=gpu_name, gpus=int(gpu_name is not None))


def show_plan(
    config: StudyConfig, shape: MachineShape, budget_s: float | None, json_out: Path | None
) -> None:
    """Print the preview (and write it as JSON); a budget too small exits 2 saying what it needs."""
    try:
        preview = plan_preview(config, shape, budget_s)
    except BudgetTooSmallError as exc:
        raise fail(str(exc)) from exc
    print_preview(preview)
    if json_out is not None:
        json_out.write_text(json.dumps(preview.model_dump(mode="json"), indent=2))
        console.print(f"plan: [bold]{json_out}[/]", soft_wrap=True)


def print_preview(preview: PlanPreview) -> None:
    shape = preview.machine
    gpu = f", {shape.gpus}x {shape.gpu}" if shape.gpu else ""
    console.print(f"[bold]plan for {shape.label}[/]: {shape.cores} vCPUs{gpu} (nothing is measured)")
    for device, layouts in preview.layouts.items():
        knobs = "; ".join(f"{k} {v}" for k, v in preview.runtime_values[device].items()) or "defaults"
        console.print(
            f"  {device}: layouts (workers x threads) {', '.join(layouts)}; batch sizes "
            f"{preview.batch_sizes[device]}; runtime knobs {knobs}",
            soft_wrap=True,
        )
    table = Table(title="candidates per backend (where the backend honours each knob)")
    for column in ("backend", "device", "candidates", "runtime knobs swept"):
        table.add_column(column)
    for space in preview.backends:
        table.add_row(
            space.backend, space.device, str(space.candidates), ", ".join(space.runtime_knobs) or "-"
        )
    console.print(table)
    _print_time(preview)


def _print_time(preview: PlanPreview) -> None:
    time = preview.time
    console.print(
        f"search: at most {preview.searched} candidates (eager and the largest served backends' spaces); "
        f"budget {preview.budget_s / 60:.1f} min"
    )
    for phase in time.phases:
        console.print(
            f"  {phase.name:>8}: {phase.candidates} candidates, {phase.servers} servers, "
            f"about {phase.seconds / 60:.1f} min"
        )
    left = preview.searched - time.probed
    cut = (
        f"; {left} not measured (each backend in turn, spread over its grid)"
        if time.probed and left > 0
        else ""
    )
    console.print(
        f"  total about {time.total_s / 60:.1f} min of the {preview.budget_s / 60:.1f} min budget{cut}"
    )
