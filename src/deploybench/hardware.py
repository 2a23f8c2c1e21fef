"""What machine this is: CPU vendor, model and microarchitecture family, cores, memory, accelerator.

The CPU family is read from /proc/cpuinfo's numbers (x86: vendor_id, cpu family, model, stepping;
Arm: CPU implementer and part), never from the model name: a cloud VM often shows only "AMD EPYC".
The family decides which catalogue rows may price the machine (deploybench.pricing.machine), so a Zen 3
EPYC (AWS c6a/m6a/r6a) is never priced as an Intel Sapphire Rapids c7i.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import psutil
from pydantic import Field

from deploybench.config import StrictModel

CPUINFO = Path("/proc/cpuinfo")
INTERESTING_FLAGS = (
    "avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8",
)  # fmt: skip
# Instructions with an 8-bit multiply-accumulate that does not saturate (VNNI, AMX): without one,
# x86 int8 kernels use VPMADDUBSW, whose 16-bit intermediate sums saturate.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")

# (vendor_id, cpu family, models) -> (family code, generation as vendors name it). Sources: AMD and
# Intel model numbers as Linux reports them (arch/x86/include/asm/intel-family.h; AMD's processor
# programming references), e.g. Milan reports family 25 model 1.
X86_FAMILIES: tuple[tuple[str, int, Iterable[int], str, str], ...] = (
    ("AuthenticAMD", 23, range(0x00, 0x10), "naples", "1st Gen AMD EPYC (Zen)"),
    ("AuthenticAMD", 23, range(0x30, 0x40), "rome", "2nd Gen AMD EPYC (Zen 2)"),
    ("AuthenticAMD", 25, range(0x00, 0x10), "milan", "3rd Gen AMD EPYC Milan (Zen 3)"),
    ("AuthenticAMD", 25, range(0x10, 0x20), "genoa", "4th Gen AMD EPYC Genoa (Zen 4)"),
    ("AuthenticAMD", 25, range(0xA0, 0xB0), "bergamo", "4th Gen AMD EPYC Bergamo (Zen 4c)"),
    ("AuthenticAMD", 26, range(0x00, 0x20), "turin", "5th Gen AMD EPYC Turin (Zen 5)"),
    ("GenuineIntel", 6, (79,), "broadwell", "Intel Xeon E5 v4 (Broadwell)"),
    ("GenuineIntel", 6, (106, 108), "ice-lake", "3rd Gen Intel Xeon Scalable (Ice Lake)"),
    ("GenuineIntel", 6, (143,), "sapphire-rapids", "4th Gen Intel Xeon Scalable (Sapphire Rapids)"),
    ("GenuineIntel", 6, (207,), "emerald-rapids", "5th Gen Intel Xeon Scalable (Emerald Rapids)"),
    ("GenuineIntel", 6, (173, 174), "granite-rapids", "Intel Xeon 6 (Granite Rapids)"),
)
# Intel model 85 is three generations told apart by stepping.
INTEL_MODEL_85 = (
    (range(0, 5), "skylake", "1st Gen Intel Xeon Scalable (Skylake-SP)"),
    (range(5, 8), "cascade-lake", "2nd Gen Intel Xeon Scalable (Cascade Lake)"),
    (range(10, 12), "cooper-lake", "3rd Gen Intel Xeon Scalable (Cooper Lake)"),
)
# Arm Ltd (implementer 0x41) Neoverse cores: the cores of AWS Graviton2/3/4/5.
ARM_PARTS = {
    0xD0C: ("neoverse-n1", "Arm Neoverse N1 (AWS Graviton2)"),
    0xD40: ("neoverse-v1", "Arm Neoverse V1 (AWS Graviton3)"),
    0xD4F: ("neoverse-v2", "Arm Neoverse V2 (AWS Graviton4)"),
    0xD84: ("neoverse-v3", "Arm Neoverse V3 (AWS Graviton5)"),
}
VENDORS = {"AuthenticAMD": "amd", "GenuineIntel": "intel"}


class CpuProfile(StrictModel):
    """The CPU as /proc/cpuinfo describes it, with the family it was classified as."""

    vendor: str | None = Field(None, description="amd | intel | arm | ... (None: unknown)")
    vendor_id: str | None = None
    model_name: str | None = None
    family_id: int | None = Field(None, description="x86 'cpu family'")
    model_id: int | None = Field(None, description="x86 'model'; Arm: the CPU part")
    stepping: int | None = None
    family: str | None = Field(None, description="microarchitecture code, e.g. milan; None: unknown")
    generation: str | None = None
    flags: list[str] = Field(default_factory=list)

    @property
    def label(self) -> str:
        """e.g. '3rd Gen AMD EPYC Milan (Zen 3), family 25 model 1'."""
        name = self.generation or self.model_name or "unknown CPU"
        if self.family_id is not None:
            return f"{name}, family {self.family_id} model {self.model_id}"
        return name if self.model_id is None else f"{name}, part {self.model_id:#x}"


class MachineProfile(StrictModel):
    """This machine: what a price must match (CPU family, vCPUs) and what else is recorded."""

    cpu: CpuProfile
    cores: int = Field(description="logical CPUs this process may use (the vCPUs a study uses)")
    logical_cpus: int | None = None
    memory_gib: float
    gpu: str | None = None


def _first_values(text: str) -> dict[str, str]:
    """The first value of each key in /proc/cpuinfo (the first processor's block)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in values:
            values[key.strip()] = value.strip()
    return values


def _number(text: str | None) -> int | None:
    try:
        return int(text, 0) if text else None
    except ValueError:
        return None


def classify_x86(vendor_id: str, family: int, model: int, stepping: int | None) -> tuple[str, str] | None:
    """(family code, generation) for a known server x86 CPU, else None."""
    if vendor_id == "GenuineIntel" and family == 6 and model == 85:
        for steppings, code, generation in INTEL_MODEL_85:
            if stepping in steppings:
                return code, generation
        return None
    for vendor, cpu_family, models, code, generation in X86_FAMILIES:
        if vendor == vendor_id and cpu_family == family and model in models:
            return code, generation
    return None


def parse_cpuinfo(text: str) -> CpuProfile:
    """Classify the CPU from the text of /proc/cpuinfo (x86 or Arm)."""
    values = _first_values(text)
    flags = values.get("flags") or values.get("Features") or ""
    present = [flag for flag in INTERESTING_FLAGS if flag in flags.split()]
    vendor_id = values.get("vendor_id")
    if vendor_id is not None:
        family, model, stepping = (_number(values.get(k)) for k in ("cpu family", "model", "stepping"))
        known = (
            classify_x86(vendor_id, family, model, stepping)
            if family is not None and model is not None
            else None
        )
        return CpuProfile(
            vendor=VENDORS.get(vendor_id, vendor_id.lower()),
            vendor_id=vendor_id,
            model_name=values.get("model name"),
            family_id=family,
            model_id=model,
            stepping=stepping,
            family=known[0] if known else None,
            generation=known[1] if known else None,
            flags=present,
        )
    implementer, part = _number(values.get("CPU implementer")), _number(values.get("CPU part"))
    known_arm = ARM_PARTS.get(part) if implementer == 0x41 and part is not None else None
    return CpuProfile(
        vendor="arm" if implementer == 0x41 else None,
        model_name=values.get("model name") or platform.processor() or None,
        model_id=part,
        family=known_arm[0] if known_arm else None,
        generation=known_arm[1] if known_arm else None,
        flags=present,
    )


@cache
def detect_cpu() -> CpuProfile:
    """This machine's CPU (read once per process: it does not change under us)."""
    if not CPUINFO.exists():
        return CpuProfile(model_name=platform.processor() or None)
    return parse_cpuinfo(CPUINFO.read_text(errors="replace"))


def has_int8_dot_product() -> bool:
    """True when the CPU has VNNI or AMX int8: u8 x s8 products then cannot saturate."""
    return any(flag in detect_cpu().flags for flag in INT8_DOT_FLAGS)


def has_native_bf16() -> bool:
    """True when the CPU computes in bf16 (AVX512-BF16, AMX): elsewhere bf16 is emulated, slower than fp32."""
    return any(flag in detect_cpu().flags for flag in BF16_FLAGS)


def usable_cores() -> int:
    """Cores this process may run on (affinity): what the serving knobs are pruned against."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def detect_gpu() -> str | None:
    """CUDA devices as torch sees them (torch is imported only here, late)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))


def detect_machine() -> MachineProfile:
    return MachineProfile(
        cpu=detect_cpu(),
        cores=usable_cores(),
        logical_cpus=os.cpu_count(),
        memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
        gpu=detect_gpu(),
    )
