"""Resolve the environment once per study: the fingerprint recorded with every trial."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

import psutil

import deploybench
from deploybench.backends.cache import installed_versions
from deploybench.hardware import cpu_model_and_flags
from deploybench.study.plan import StackOffer

_LIBRARIES = (
    "torch",
    "torchvision",
    "onnxruntime",
    "openvino",
    "nncf",
    "numpy",
    "pillow",
    "uvicorn",
    "starlette",
    "aiohttp",
    "hdrhistogram",
)
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")
_INTERESTING_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def _gpu() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))


def usable_cores() -> int:
    """Cores this process may run on (affinity), which is what the serving knobs are pruned against."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def fingerprint() -> dict[str, Any]:
    """Machine and software facts that decide whether two measurements are comparable."""
    model, flags = cpu_model_and_flags()
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": model,
        "cpu_flags": [flag for flag in _INTERESTING_FLAGS if flag in flags],
        "cores": usable_cores(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": _gpu(),
        "libraries": installed_versions(_LIBRARIES),
        "thread_settings": {name: os.environ.get(name) for name in _THREAD_VARIABLES},
        "deploybench": deploybench.__version__,
    }


def stack_offers(names: list[str]) -> list[StackOffer]:
    """Resolve the study's stacks on this machine: `all` expanded, each one's availability and backends.
    Part of a machine's environment: on a cluster each node answers for itself."""
    from deploybench.stacks import all_stacks, resolve_stacks

    stacks = all_stacks()
    offers = []
    for name in resolve_stacks(names):
        stack = stacks[name]()
        availability = stack.availability()
        offers.append(StackOffer(name, None if availability.ok else availability.reason, stack.backends))
    return offers
