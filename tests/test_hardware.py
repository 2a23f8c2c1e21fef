"""CPU family from /proc/cpuinfo's numbers (the model name of a VM is often just "AMD EPYC")."""

from __future__ import annotations

import shutil
from pathlib import Path

from deploybench.hardware import (
    cgroup_cpu_limit,
    detect_gpu,
    detect_machine,
    gpu_name_from_proc,
    gpu_names_from_smi,
    parse_cpu_max,
    parse_cpuinfo,
    parse_sibling_list,
    threads_per_core,
)


def x86(vendor: str, family: int, model: int, stepping: int, name: str, flags: str = "avx2") -> str:
    return (
        f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        f"model name\t: {name}\nstepping\t: {stepping}\nflags\t\t: fpu sse2 {flags}\n\n"
        f"processor\t: 1\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
    )


def test_this_kind_of_amd_vm_is_milan_not_an_intel_machine() -> None:
    cpu = parse_cpuinfo(x86("AuthenticAMD", 25, 1, 1, "AMD EPYC"))
    assert (cpu.vendor, cpu.family, cpu.family_id, cpu.model_id) == ("amd", "milan", 25, 1)
    assert cpu.flags == ["avx2"] and "Zen 3" in (cpu.generation or "")


def test_x86_generations_by_family_model_and_stepping() -> None:
    cases = {
        ("AuthenticAMD", 25, 0x11, 1): "genoa",
        ("AuthenticAMD", 26, 2, 0): "turin",
        ("AuthenticAMD", 23, 0x31, 0): "rome",
        ("GenuineIntel", 6, 143, 8): "sapphire-rapids",
        ("GenuineIntel", 6, 207, 2): "emerald-rapids",
        ("GenuineIntel", 6, 173, 1): "granite-rapids",
        ("GenuineIntel", 6, 106, 6): "ice-lake",
        ("GenuineIntel", 6, 85, 7): "cascade-lake",
        ("GenuineIntel", 6, 85, 4): "skylake",
        ("GenuineIntel", 6, 42, 7): None,  # a desktop Sandy Bridge: unknown, never guessed
    }
    for (vendor, family, model, stepping), expected in cases.items():
        assert parse_cpuinfo(x86(vendor, family, model, stepping, "x")).family == expected


def test_graviton_is_recognised_by_its_neoverse_part() -> None:
    text = (
        "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve\n"
        "CPU implementer\t: 0x41\nCPU part\t: 0xd40\n"
    )
    cpu = parse_cpuinfo(text)
    assert (cpu.vendor, cpu.family) == ("arm", "neoverse-v1") and "Graviton3" in (cpu.generation or "")


def test_this_machine_is_detected_with_cores_and_memory() -> None:
    machine = detect_machine()
    assert machine.cores >= 1 and machine.memory_gib > 0 and machine.cpu.vendor


def test_the_cgroup_quota_caps_the_cores_and_smt_siblings_are_counted(tmp_path: Path) -> None:
    assert parse_cpu_max("400000 100000\n") == 4.0 and parse_cpu_max("max 100000") is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(v1) is None and cgroup_cpu_limit(tmp_path / "none") is None
    assert [parse_sibling_list(t) for t in ("0,32\n", "0-1", "5")] == [2, 2, 1]
    topology = tmp_path / "cpu0" / "topology"
    topology.mkdir(parents=True)
    (topology / "thread_siblings_list").write_text("0,64\n")
    assert threads_per_core(tmp_path) == 2


def test_the_gpu_is_named_without_torch(tmp_path: Path) -> None:
    assert gpu_names_from_smi("NVIDIA L4\nNVIDIA L4\n") == ["NVIDIA L4", "NVIDIA L4"]
    info = "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 42\nBus Location: \t 0000:00:1e.0\n"
    assert gpu_name_from_proc(info) == "NVIDIA H100 80GB HBM3"
    (tmp_path / "0000:00:1e.0").mkdir()
    (tmp_path / "0000:00:1e.0" / "information").write_text(info)
    if shutil.which("nvidia-smi") is None:
        assert detect_gpu(tmp_path) == "NVIDIA H100 80GB HBM3"
        assert detect_gpu(tmp_path / "none") is None
