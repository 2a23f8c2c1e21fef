"""`deploybench variants` end to end on a small model: table, loud weights line, --json, bad names."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from deploybench.cli import app

from .conftest import TINY


def test_variants_prints_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "variants.json"
    result = CliRunner().invoke(app, [
        "variants", "--model", TINY, "--backends", "eager,eager-channels-last,torchscript",
        "--batch", "1,2", "--threads", "1", "--budget", "1", "--cache-dir", str(tmp_path / "cache"),
        "--json", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "eager-channels-last" in result.output and "torchscript" in result.output
    assert "weights: entry:" in result.output
    report = json.loads(out.read_text())
    assert report["weights"] == f"entry:{TINY}"
    verdicts = {v["backend"]: v["parity"]["verdict"] for v in report["variants"]}
    assert verdicts == {"eager": "reference", "eager-channels-last": "passed", "torchscript": "passed"}
    timings = report["variants"][1]["timings"]
    assert [(t["batch"], t["threads"]) for t in timings] == [(1, 1), (2, 1)] and timings[0]["samples"]


def test_variants_random_weights_are_loud_and_unknown_backends_listed(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["variants", "--model", TINY, "--backends", "eager,tflite"])
    assert result.exit_code == 2
    assert "tflite" in result.output and "known backends" in result.output and "torchscript" in result.output
    bad_model = CliRunner().invoke(app, ["variants", "--model", str(tmp_path / "m.onnx")])
    assert bad_model.exit_code == 2 and "ONNX file not found" in bad_model.output
    bad_batch = CliRunner().invoke(app, ["variants", "--model", TINY, "--batch", "0"])
    assert bad_batch.exit_code == 2 and "--batch" in bad_batch.output
    random = CliRunner().invoke(app, [
        "variants", "--model", "torchvision:mobilenet_v3_small", "--weights", "random", "--backends", "eager",
        "--batch", "1", "--budget", "0.5", "--cache-dir", str(tmp_path / "cache"),
    ])  # fmt: skip
    assert random.exit_code == 0, random.output
    assert random.output.count("RANDOM WEIGHTS") == 2  # above and below the table
