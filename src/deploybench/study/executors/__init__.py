"""Executors: this machine (local) or a Ray cluster (ray), behind one interface (see base.py)."""

from __future__ import annotations

import importlib

from deploybench.study.executors.base import (
    Executor,
    ExecutorError,
    MachineTarget,
    Prepared,
    PrepareRequest,
    register,
    registered,
)
from deploybench.study.spec import StudyConfig

_EXECUTOR_MODULES: tuple[str, ...] = ("local", "ray_cluster")  # one entry per executor module


def executor_for(config: StudyConfig) -> Executor:
    """The Ray executor for a study with a cluster, else this machine's."""
    for module in _EXECUTOR_MODULES:
        importlib.import_module(f"deploybench.study.executors.{module}")
    return registered()["ray" if config.cluster is not None else "local"](config)


__all__ = [
    "Executor",
    "ExecutorError",
    "MachineTarget",
    "PrepareRequest",
    "Prepared",
    "executor_for",
    "register",
]
