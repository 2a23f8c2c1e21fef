"""What machine this is: CPU vendor, model and microarchitecture family, cores, memory, accelerator.

The CPU family is read from /proc/cpuinfo's numbers (x86: vendor_id, cpu family, model, stepping;
Arm: CPU implementer and part), never from the model name: a cloud VM often shows only "AMD EPYC".
The family decides which catalogue rows may price the machine (deploybench.pricing.machine), so a Zen 3
EPYC (AWS c6a/m6a/r6a) is never priced as an Intel Sapphire Rapids c7i.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import psutil
from pydantic import Field

from deploybench.config import StrictModel

CPUINFO = Path("/proc/cpuinfo")
CGROUP = Path("/sys/fs/cgroup")
CPU_TOPOLOGY = Path("/sys/devices/system/cpu")
NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")
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
    threads_per_core: int = Field(1, ge=1, description="SMT siblings per physical core")
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


def parse_cpu_max(text: str) -> float | None:
    """CPUs a cgroup v2 `cpu.max` ("QUOTA PERIOD", or "max PERIOD": no limit) allows."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    quota, period = _number(parts[0]), _number(parts[1])
    return quota / period if quota and period and quota > 0 else None


def cgroup_cpu_limit(root: Path = CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (v2 cpu.max, else v1 cfs quota/period), or None.

    A container given 4 CPUs on a 64-core host still sees 64 in its affinity mask: without the quota,
    a plan of 64 workers would time-slice 4 CPUs and every layout would measure the throttling."""
    v2 = root / "cpu.max"
    if v2.is_file():
        return parse_cpu_max(v2.read_text())
    quota, period = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
    if quota.is_file() and period.is_file():
        text = f"{quota.read_text().strip()} {period.read_text().strip()}"
        return parse_cpu_max(text.replace("-1 ", "max "))
    return None


def usable_cores() -> int:
    """Cores this process may run on (affinity), capped by the cgroup's CPU quota (rounded down, at
    least 1): what the serving knobs are pruned against."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cores, int(limit))) if limit is not None else cores


def parse_sibling_list(text: str) -> int:
    """How many logical CPUs a `thread_siblings_list` ("0,32" or "0-1") names."""
    count = 0
    for part in text.strip().split(","):
        low, _, high = part.partition("-")
        if low.strip().isdigit():
            count += int(high) - int(low) + 1 if high.strip().isdigit() else 1
    return max(1, count)


def threads_per_core(topology: Path = CPU_TOPOLOGY) -> int:
    """SMT siblings per physical core (1: no SMT, or unknown), from cpu0's thread_siblings_list."""
    siblings = topology / "cpu0" / "topology" / "thread_siblings_list"
    return parse_sibling_list(siblings.read_text()) if siblings.is_file() else 1


def gpu_names_from_smi(text: str) -> list[str]:
    """GPU names from `nvidia-smi --query-gpu=name --format=csv,noheader` (one a line)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def gpu_name_from_proc(text: str) -> str | None:
    """The `Model:` line of /proc/driver/nvidia/gpus/*/information."""
    found = re.search(r"^Model:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else None


@cache
def _smi_names() -> list[str]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        done = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return gpu_names_from_smi(done.stdout) if done.returncode == 0 else []


def detect_gpu(proc: Path = NVIDIA_PROC) -> str | None:
    """NVIDIA GPUs by name, from nvidia-smi or the driver's /proc files: never by importing torch
    (seconds of start-up, and a CPU-only wheel sees no GPU that is there)."""
    names = _smi_names()
    if not names and proc.is_dir():
        infos = sorted(proc.glob("*/information"))
        names = [n for n in (gpu_name_from_proc(i.read_text(errors="replace")) for i in infos) if n]
    return ", ".join(names) or None


def detect_machine() -> MachineProfile:
    return MachineProfile(
        cpu=detect_cpu(),
        cores=usable_cores(),
        logical_cpus=os.cpu_count(),
        threads_per_core=threads_per_core(),
        memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
        gpu=detect_gpu(),
    )
