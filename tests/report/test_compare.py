"""compare: studies taken on different machines, merged into one ranked comparison and report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers.report_factory import make_trial, write_study

from deploybench.report.compare import compare_studies
from deploybench.report.tables import machine_rows
from deploybench.results import MachineInfo

CPU = MachineInfo(label="ml.c5.xlarge", instance="ml.c5.xlarge", price_per_hour=0.204)
GPU = MachineInfo(label="ml.g4dn.xlarge", instance="ml.g4dn.xlarge", price_per_hour=0.7364, gpu="T4")
INF = MachineInfo(label="inf1 (implied price)", price_per_hour=0.3286)


def _capacity(peak_rps: float) -> float:
    """The factory's closed-loop curve reaches capacity x (1 - e^(-16/1.5)) at concurrency 16."""
    return peak_rps / (1 - 2.718281828459045 ** (-16 / 1.5))


def test_the_accelerator_comparison_the_project_grew_from(tmp_path: Path):
    cpu = write_study(tmp_path / "cpu", [make_trial("compile", capacity_rps=_capacity(11.45), machine=CPU)])
    gpu = write_study(tmp_path / "gpu", [make_trial("compile", capacity_rps=_capacity(126.3), machine=GPU)])
    inf = write_study(tmp_path / "inf", [make_trial("neuron", capacity_rps=_capacity(304.3), machine=INF)])

    result = compare_studies([cpu, gpu, inf], tmp_path / "out")
    rec = result.recommendation

    by_machine = {ev.machine: ev for ev in rec.evaluations}
    assert [
        round(by_machine[m].cost_per_1m, 2)
        for m in ("inf1 (implied price)", "ml.g4dn.xlarge", "ml.c5.xlarge")
    ] == [0.30, 1.62, 4.95]
    assert rec.winner.machine == "inf1 (implied price)"
    assert f"{by_machine['ml.g4dn.xlarge'].cost_vs_winner:.1f}" == "5.4"
    assert f"{by_machine['ml.c5.xlarge'].cost_vs_winner:.1f}" == "16.5"
    assert result.html_path == tmp_path / "out" / "report.html"
    assert rec.machines == ["inf1 (implied price)", "ml.c5.xlarge", "ml.g4dn.xlarge"]
    frame = pd.read_csv(result.paths["csv"])
    assert list(frame["machine"]) == ["inf1 (implied price)", "ml.g4dn.xlarge", "ml.c5.xlarge"]


def test_same_machine_label_in_two_studies_is_told_apart(tmp_path: Path):
    unpriced = MachineInfo(label="c5.xlarge", instance="c5.xlarge")  # priced from the catalogue
    first = write_study(tmp_path / "monday", [make_trial("eager", capacity_rps=16, machine=unpriced)])
    second = write_study(tmp_path / "tuesday", [make_trial("eager", capacity_rps=17, machine=unpriced)])
    rec = compare_studies([first, second], tmp_path / "out").recommendation
    assert sorted(ev.machine for ev in rec.evaluations) == ["c5.xlarge (monday)", "c5.xlarge (tuesday)"]
    assert all(ev.usd_per_hour == 0.17 for ev in rec.evaluations)


def _eager_and_compiled_on_two_machines(tmp_path: Path) -> tuple[Path, Path]:
    """A CPU and a GPU study, each with eager and one compiled backend."""
    cpu = write_study(
        tmp_path / "cpu",
        [
            make_trial("eager", capacity_rps=16, machine=CPU),
            make_trial("openvino-int8", "int8", capacity_rps=90, machine=CPU),
        ],
    )
    gpu = write_study(
        tmp_path / "gpu",
        [
            make_trial("eager", capacity_rps=60, machine=GPU),
            make_trial("tensorrt", "fp16", capacity_rps=300, machine=GPU),
        ],
    )
    return cpu, gpu


def test_each_machine_is_compared_with_its_own_eager_baseline(tmp_path: Path):
    cpu, gpu = _eager_and_compiled_on_two_machines(tmp_path)
    rec = compare_studies([cpu, gpu], tmp_path / "out").recommendation
    trt = next(ev for ev in rec.evaluations if ev.backend == "tensorrt")
    gpu_eager = next(ev for ev in rec.evaluations if ev.backend == "eager" and ev.machine == "ml.g4dn.xlarge")
    assert trt.baseline_key == gpu_eager.key
    assert trt.throughput_x == pytest.approx(trt.throughput_rps / gpu_eager.throughput_rps)


def test_different_models_are_warned_about(tmp_path: Path):
    a = write_study(tmp_path / "a", [make_trial("eager", machine=CPU)])
    other = make_trial("eager", machine=GPU).model_copy(update={"model": "efficientnet-lite0"})
    b = write_study(tmp_path / "b", [other])
    result = compare_studies([a, b], tmp_path / "out")
    assert any("different models" in w for w in result.warnings)


def test_the_by_machine_table_sets_each_machine_compiled_or_not_side_by_side(tmp_path: Path):
    cpu, gpu = _eager_and_compiled_on_two_machines(tmp_path)
    result = compare_studies([cpu, gpu], tmp_path / "out")
    rows = machine_rows(result.recommendation)
    assert [(r["machine"], r["kind"]) for r in rows] == [
        ("ml.c5.xlarge", "eager (not compiled)"),
        ("ml.c5.xlarge", "best"),
        ("ml.g4dn.xlarge", "eager (not compiled)"),
        ("ml.g4dn.xlarge", "best"),
    ]  # openvino-int8 on the c5 is the cheapest per 1M (90 req/s at $0.204 vs 300 at $0.7364)
    cpu_best, gpu_eager = rows[1], rows[2]
    assert cpu_best["cost_vs_winner"] == pytest.approx(1.0) and cpu_best["rank"] == 1
    assert cpu_best["throughput_x"] == pytest.approx(90 / 16, rel=0.01)
    assert gpu_eager["transactions_per_hour"] == pytest.approx(gpu_eager["throughput_rps"] * 3600)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "## By machine" in summary and "| ml.g4dn.xlarge | best | tensorrt fp16" in summary
    assert 'id="machines"' in result.html_path.read_text()
