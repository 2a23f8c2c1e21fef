"""A study prices the machine it ran on: catalogue match by CPU family and vCPUs, or the user's word."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.report_factory import make_trial

from deploybench.config import MachineSpec
from deploybench.hardware import CpuProfile, MachineProfile
from deploybench.pricing.catalogue import PriceOverride, accelerator_model, gpu_is_model
from deploybench.pricing.machine import MachinePriceError, resolve_machine
from deploybench.report import write_report


def machine(
    family: str | None, vendor: str = "amd", cores: int = 2, gpu: str | None = None
) -> MachineProfile:
    cpu = CpuProfile(vendor=vendor, family=family, model_name=f"{vendor} cpu", family_id=25, model_id=1)
    return MachineProfile(cpu=cpu, cores=cores, memory_gib=24.0, gpu=gpu)


def test_a_milan_machine_is_priced_as_the_cheapest_2_vcpu_milan_instance() -> None:
    info = resolve_machine(MachineSpec(), machine("milan"), "host")
    assert (info.instance, info.price_per_hour, info.warnings) == ("c6a.large", 0.0765, [])
    assert "m6a.large" in (info.price_source or "") and info.cpu_family == "milan"


def test_each_cpu_family_gets_its_own_instance_family() -> None:
    expected = {"sapphire-rapids": "c7i.large", "genoa": "c7a.large", "turin": "c8a.large"}
    for family, instance in expected.items():
        assert resolve_machine(MachineSpec(), machine(family), "h").instance == instance
    assert resolve_machine(MachineSpec(), machine("neoverse-v2", "arm"), "h").instance == "c8g.large"
    gpu = resolve_machine(MachineSpec(), machine("cascade-lake", "intel", 4, "Tesla T4"), "h")
    assert gpu.instance == "g4dn.xlarge"


def test_no_matching_entry_stops_and_says_why_unless_unpriced() -> None:
    with pytest.raises(
        MachinePriceError, match=r"no milan entry has 3 vCPUs.*--instance NAME.*--price-per-hour"
    ):
        resolve_machine(MachineSpec(), machine("milan", cores=3), "h")
    with pytest.raises(MachinePriceError, match="not one deploybench recognises"):
        resolve_machine(MachineSpec(), machine(None), "h")
    info = resolve_machine(MachineSpec(unpriced=True), machine(None), "h")
    assert info.price_per_hour is None and info.label == "h" and "no price" in info.warnings[0]


def test_a_given_instance_of_another_cpu_is_used_with_a_warning() -> None:
    info = resolve_machine(MachineSpec(instance="c7i.large"), machine("milan"), "h")
    assert (info.instance, info.price_per_hour) == ("c7i.large", 0.08925)
    assert len(info.warnings) == 1 and "sapphire-rapids" in info.warnings[0]
    same = resolve_machine(MachineSpec(instance="m6a.large"), machine("milan"), "h")
    assert same.warnings == [] and same.price_per_hour == 0.0864
    priced = resolve_machine(MachineSpec(price_per_hour=0.5, instance="c7i.large"), machine("milan"), "h")
    assert priced.price_per_hour == 0.5 and "sapphire-rapids" in priced.warnings[0]


def test_the_mismatch_warning_reaches_summary_html_and_json(tmp_path: Path) -> None:
    info = resolve_machine(MachineSpec(instance="c7i.large"), machine("milan"), "h")
    trial = make_trial("openvino-int8", capacity_rps=100.0).model_copy(update={"machine": info})
    (tmp_path / "trials.jsonl").write_text(trial.model_dump_json() + "\n")
    result = write_report(tmp_path, json_path=tmp_path / "report.json")
    assert result.warnings == info.warnings
    for name in ("summary.md", "report.html", "report.json"):
        assert "does not match this machine" in (tmp_path / name).read_text(), name
    assert json.loads((tmp_path / "report.json").read_text())["warnings"] == info.warnings


def test_a_report_time_instance_is_checked_against_the_recorded_cpu(tmp_path: Path) -> None:
    info = resolve_machine(MachineSpec(), machine("milan"), "h")
    trial = make_trial("openvino-int8", capacity_rps=100.0).model_copy(update={"machine": info})
    (tmp_path / "trials.jsonl").write_text(trial.model_dump_json() + "\n")
    assert write_report(tmp_path).warnings == []
    repriced = write_report(
        tmp_path, price_override=PriceOverride(usd_per_hour=0.08925, instance="c7i.large")
    )
    assert any("c7i.large does not match" in w for w in repriced.warnings)


def test_a_gpu_is_priced_by_its_exact_model_so_an_l40s_is_not_an_l4() -> None:
    l4 = resolve_machine(MachineSpec(), machine("milan", "amd", 4, "NVIDIA L4"), "h")
    assert l4.instance == "g6.xlarge"
    with pytest.raises(MachinePriceError):
        resolve_machine(MachineSpec(), machine("milan", "amd", 4, "NVIDIA L40S"), "h")
    assert gpu_is_model("NVIDIA A100-SXM4-40GB", "A100") and not gpu_is_model("NVIDIA A10G", "A10")
    assert accelerator_model("1x NVIDIA L4 24 GB") == "L4" and accelerator_model("1x AWS Inferentia2") is None
