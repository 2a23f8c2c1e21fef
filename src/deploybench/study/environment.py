"""Resolve the environment once per study: the fingerprint recorded with every trial."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

import deploybench
from deploybench.cache import installed_versions
from deploybench.hardware import MachineProfile, detect_machine
from deploybench.stacks import all_stacks, resolve_stacks
from deploybench.study.plan import StackOffer

LIBRARIES = (  # their versions are part of a machine's fingerprint, checked on every cluster node
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


def fingerprint(machine: MachineProfile | None = None) -> dict[str, Any]:
    """Machine and software facts that decide whether two measurements are comparable."""
    machine = machine or detect_machine()
    cpu = machine.cpu
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu.model_name,
        "cpu_vendor": cpu.vendor,
        "cpu_family": cpu.family,
        "cpu_generation": cpu.generation,
        "cpu_ids": {"vendor_id": cpu.vendor_id, "family": cpu.family_id, "model": cpu.model_id},
        "cpu_flags": cpu.flags,
        "cores": machine.cores,
        "logical_cpus": machine.logical_cpus,
        "threads_per_core": machine.threads_per_core,
        "memory_gib": machine.memory_gib,
        "gpu": machine.gpu,
        "libraries": installed_versions(LIBRARIES),
        "thread_settings": {name: os.environ.get(name) for name in _THREAD_VARIABLES},
        "deploybench": deploybench.__version__,
    }


def stack_offers(names: list[str]) -> list[StackOffer]:
    """Resolve the study's stacks on this machine: `all` expanded, each one's availability and backends.
    Part of a machine's environment: on a cluster each node answers for itself."""
    stacks = all_stacks()
    offers = []
    for name in resolve_stacks(names):
        stack = stacks[name]()
        availability = stack.availability()
        offers.append(StackOffer(name, None if availability.ok else availability.reason, stack.backends))
    return offers


COMPARABLE = (
    "cpu_model",
    "cores",
    "gpu",
    "libraries",
    "deploybench",
)  # what makes two runs' figures comparable


def environment_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two runs' environments in ways that change measurements (not the hostname
    or the clock): a folder's trials are never mixed across them."""
    return [
        f"{name}: {old.get(name)} -> {new.get(name)}" for name in COMPARABLE if old.get(name) != new.get(name)
    ]
