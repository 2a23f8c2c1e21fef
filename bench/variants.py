"""Benchmark (not a test): every backend's in-process images/s at batch 1 and 8, and its ratio to eager.

All variants are built first, then timed in rounds that cycle through every (backend, batch) pair, so
eager and the others see the same machine load; the best round counts (noise on a shared machine only
ever slows a run down) and the spread between rounds is printed so a noisy run is visible. The ratio of
the fastest single calls is printed too: on a heavily shared machine it is the steadier estimate.

    .venv/bin/python bench/variants.py                      # ResNet50, random weights, 2 threads
    .venv/bin/python bench/variants.py --backends eager,openvino-int8 --rounds 3 --json out.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from deploybench.backends import BackendUnavailableError, Variant, all_backends, get_backend
from deploybench.backends.build import build_variant
from deploybench.config import ModelSpec
from deploybench.inputs.calibration import parity_inputs
from deploybench.models.loaded import LoadedModel
from deploybench.models.sources import load_model
from deploybench.variants.timing import time_variant

# Target ratios to eager at batch 1 (a row below 0.9 x its target is marked MISS); see docs/measurements.md.
TARGET_RATIO = {
    "onnxruntime": 1.6,
    "openvino": 1.5,
    "openvino-bf16": 3.0,
    "onnxruntime-int8": 4.4,
    "openvino-int8": 5.8,
}
console = Console(width=150)  # wide enough for the table when printed to a file


def build_all(model: LoadedModel, names: list[str], threads: int) -> dict[str, Variant]:
    variants: dict[str, Variant] = {}
    for name in names:
        start = time.perf_counter()
        try:
            variants[name], _ = build_variant(model.spec, name, threads=threads, model=model)
        except BackendUnavailableError as exc:
            console.print(f"[yellow]skip {name}: {exc}[/]")
            continue
        console.print(f"built {name} ({variants[name].precision}) in {time.perf_counter() - start:.1f} s")
    return variants


class Samples:
    """Per (backend, batch): the median images/s of each round, and the fastest single call seen."""

    def __init__(self) -> None:
        self.round_speeds: list[float] = []
        self.fastest_ms = float("inf")


def time_rounds(
    variants: dict[str, Variant],
    inputs: np.ndarray,
    batches: list[int],
    threads: int,
    rounds: int,
    budget: float,
) -> dict[tuple[str, int], Samples]:
    """Cycle through every (backend, batch) `rounds` times; later rounds need only one warm-up call."""
    results: dict[tuple[str, int], Samples] = {}
    for round_index in range(rounds):
        for name, variant in variants.items():
            for batch in batches:
                warmup = 3 if round_index == 0 else 1
                timing = time_variant(
                    variant, inputs[:batch], threads=threads, budget_s=budget, warmup=warmup, min_runs=3
                )
                entry = results.setdefault((name, batch), Samples())
                entry.round_speeds.append(timing.images_per_s)
                entry.fastest_ms = min(entry.fastest_ms, *timing.samples)
        console.print(f"round {round_index + 1}/{rounds} done")
    return results


def summarise(
    results: dict[tuple[str, int], Samples], variants: dict[str, Variant], batches: list[int]
) -> list[dict]:
    """Best round per pair (load on a shared machine only slows runs down) and fastest-call ratios."""
    rows = []
    for name, variant in variants.items():
        row: dict = {
            "backend": name,
            "precision": variant.precision,
            "target_ratio_b1": TARGET_RATIO.get(name),
        }
        for batch in batches:
            own, eager = results[(name, batch)], results.get(("eager", batch))
            best = max(own.round_speeds)
            row[f"b{batch}_images_per_s"] = round(best, 1)
            row[f"b{batch}_spread"] = round((best - min(own.round_speeds)) / best, 3)
            row[f"b{batch}_vs_eager"] = round(best / max(eager.round_speeds), 2) if eager else None
            row[f"b{batch}_fastest_call_vs_eager"] = (
                round(eager.fastest_ms / own.fastest_ms, 2) if eager else None
            )
        rows.append(row)
    return rows


def print_table(rows: list[dict], batches: list[int]) -> None:
    table = Table(title="in-process images/s (best of rounds) and ratio to eager in the same run")
    for column in (
        "backend",
        "precision",
        *[f"b{b} img/s" for b in batches],
        *[f"b{b} vs eager" for b in batches],
    ):
        table.add_column(column, justify="left" if column in ("backend", "precision") else "right")
    table.add_column("b1 fastest call vs eager", justify="right")
    table.add_column("target b1", justify="right")
    for row in rows:
        speeds = [f"{row[f'b{b}_images_per_s']:.1f} (±{row[f'b{b}_spread']:.0%})" for b in batches]
        ratios = [f"{row[f'b{b}_vs_eager']:.2f}x" if row[f"b{b}_vs_eager"] else "-" for b in batches]
        target = row["target_ratio_b1"]
        mark = "" if target is None else ("  ok" if (row["b1_vs_eager"] or 0) >= 0.9 * target else "  MISS")
        fastest = f"{row['b1_fastest_call_vs_eager']:.2f}x" if row.get("b1_fastest_call_vs_eager") else "-"
        table.add_row(row["backend"], row["precision"], *speeds, *ratios, fastest, f"{target or '-'}{mark}")
    console.print(table)


def main(
    model: str = "torchvision:resnet50",
    weights: str = "random",
    backends: Annotated[str, typer.Option(help="comma-separated; default: every available backend")] = "",
    batches: str = "1,8",
    threads: int = 2,
    rounds: int = 4,
    budget: Annotated[float, typer.Option(help="seconds per (backend, batch) per round")] = 1.5,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    names = [n.strip() for n in backends.split(",") if n.strip()] or sorted(all_backends())
    names = ["eager", *[n for n in names if n != "eager"]]
    for name in names:
        get_backend(name)  # unknown names fail here, listing the known ones
    batch_sizes = [int(b) for b in batches.split(",")]
    loaded = load_model(ModelSpec(source=model, weights=weights))
    console.print(
        f"{model} ({loaded.weights} weights), {threads} threads, batches {batch_sizes}, {rounds} rounds"
    )
    variants = build_all(loaded, names, threads)
    inputs = parity_inputs(loaded.input_shape, count=max(batch_sizes))
    rows = summarise(
        time_rounds(variants, inputs, batch_sizes, threads, rounds, budget), variants, batch_sizes
    )
    print_table(rows, batch_sizes)
    if json_path:
        json_path.write_text(
            json.dumps(
                {"model": model, "weights": loaded.weights, "threads": threads, "rows": rows}, indent=2
            )
        )


if __name__ == "__main__":
    typer.run(main)
