"""`deploybench run --plan-only`: the space and the time plan of machines we do not have, without
measuring; unknown names refused with the closest catalogue names; a budget too small says what it needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploybench.cli import app


def plan(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(app, ["run", "--plan-only", *args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "nothing is measured" in result.output and "min budget" in result.output
    return json.loads(out.read_text())


@pytest.mark.parametrize("cores", [16, 64])
def test_a_cpu_machines_plan_has_every_layout_batches_to_16_and_fits_its_budget(
    tmp_path: Path, cores: int
) -> None:
    found = plan(tmp_path, "--cores", str(cores))
    layouts = found["layouts"]["cpu"]
    assert {f"1 x {cores}", f"{cores // 4} x 4", f"{cores} x 1"} <= set(layouts)
    assert found["batch_sizes"]["cpu"] == [1, 4, 8, 16]
    assert found["runtime_values"]["cpu"]["streams"][-1] == cores // 2
    backends = {b["backend"]: b for b in found["backends"]}
    assert "streams" in backends["openvino-int8"]["runtime_knobs"]
    assert "inter_op_threads" in backends["onnxruntime"]["runtime_knobs"]
    time = found["time"]
    assert 0 < time["total_s"] <= found["budget_s"] and time["probed"] <= found["searched"]


def test_an_l4_machine_gets_gpu_batches_to_64_and_is_priced_by_its_exact_model(tmp_path: Path) -> None:
    found = plan(tmp_path, "--machine", "g6.xlarge")
    assert found["machine"]["gpu"] == "NVIDIA L4" and found["machine"]["cores"] == 4
    assert found["batch_sizes"]["cuda"] == [1, 2, 4, 8, 16, 32, 64]
    assert found["layouts"]["cuda"] == ["1 x 4", "2 x 2", "4 x 1"]  # instances x host threads
    assert any(b["device"] == "cuda" for b in found["backends"])
    assert found["time"]["total_s"] <= found["budget_s"]
    same = plan(tmp_path, "--cores", "4", "--gpu", "l4")
    assert same["batch_sizes"] == found["batch_sizes"]


def test_unknown_names_are_refused_with_the_closest_catalogue_names() -> None:
    runner = CliRunner()
    instance = runner.invoke(app, ["run", "--plan-only", "--machine", "g6.xlarg"])
    assert instance.exit_code == 2 and "g6.xlarge" in instance.output
    gpu = runner.invoke(app, ["run", "--plan-only", "--cores", "8", "--gpu", "L40S"])
    assert gpu.exit_code == 2 and "unknown GPU 'L40S'" in gpu.output and "L4" in gpu.output
    both = runner.invoke(app, ["run", "--plan-only", "--machine", "g6.xlarge", "--cores", "8"])
    assert both.exit_code == 2


def test_a_budget_too_small_says_how_much_it_needs() -> None:
    result = CliRunner().invoke(app, ["run", "--plan-only", "--cores", "64", "--budget", "1m"])
    assert result.exit_code == 2 and "needs about" in result.output and "--budget" in result.output
    bad = CliRunner().invoke(app, ["run", "--plan-only", "--budget", "soon"])
    assert bad.exit_code == 2 and "--budget" in bad.output
