"""`deploybench variants` end to end on a small model: table, loud weights line, --json, bad names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import TINY
from typer.testing import CliRunner

from deploybench.cli import app


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


@pytest.mark.slow
def test_variants_scores_every_verified_variant_on_labelled_data(tmp_path: Path) -> None:
    """The issue's done-when: top-1/top-5 per variant, the drop, its interval and McNemar's verdict."""
    out = tmp_path / "variants.json"
    result = CliRunner().invoke(app, [
        "variants", "--model", "efficientnet-lite0", "--eval-data", "bundled",
        "--backends", "eager,onnxruntime-int8", "--batch", "1", "--budget", "0.5",
        "--cache-dir", str(tmp_path / "cache"), "--json", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Labelled accuracy" in result.output and "McNemar p" in result.output
    assert "int8 calibration: 100 images from 11 photos" in result.output
    variants = {v["backend"]: v for v in json.loads(out.read_text())["variants"]}
    eager, int8 = variants["eager"]["accuracy"], variants["onnxruntime-int8"]["accuracy"]
    assert eager["n"] == int8["n"] == 80 and eager["drop_pp"] is None
    assert int8["reference_top1"] == eager["top1"]
    assert int8["drop_pp"] == pytest.approx((eager["top1"] - int8["top1"]) * 100)
    assert int8["drop_low_pp"] < int8["drop_pp"] < int8["drop_high_pp"]
    assert 0 <= int8["p_value"] <= 1 and isinstance(int8["significant"], bool)
    assert f"n={int8['n']}" in int8["summary"] and "McNemar" in int8["summary"]


def test_bad_evaluation_data_is_an_error_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "data" / "not-a-class").mkdir(parents=True)
    result = CliRunner().invoke(app, ["variants", "--model", TINY, "--eval-data", str(tmp_path / "data")])
    assert result.exit_code == 2 and "not-a-class" in result.output
