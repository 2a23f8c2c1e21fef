"""What the CPU can do, read from /proc/cpuinfo (Linux): the flags that change how a backend must build.

The machine behind a study changes (Intel with AMX one day, an AMD EPYC with AVX2 only the next), so
backends ask here instead of assuming the machine they were written on.
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# Instructions with an 8-bit multiply-accumulate that does not saturate (VNNI, AMX): without one,
# x86 int8 kernels use VPMADDUBSW, whose 16-bit intermediate sums saturate.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@cache
def cpu_model_and_flags() -> tuple[str | None, tuple[str, ...]]:
    """CPU model name and its flags (empty where /proc/cpuinfo does not exist)."""
    if not CPUINFO.exists():
        return platform.processor() or None, ()
    model, flags = None, ()
    for line in CPUINFO.read_text().splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = tuple(value.split())
    return model, flags


def has_int8_dot_product() -> bool:
    """True when the CPU has VNNI or AMX int8: u8 x s8 products then cannot saturate."""
    _, flags = cpu_model_and_flags()
    return any(flag in flags for flag in INT8_DOT_FLAGS)
