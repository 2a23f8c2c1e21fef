"""CPU family from /proc/cpuinfo's numbers (the model name of a VM is often just "AMD EPYC")."""

from __future__ import annotations

from deploybench.hardware import detect_machine, parse_cpuinfo


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
