"""Serving stacks: one module per stack, each registering a Stack class (see base.py).

deploybench (its own server, the reference), torchserve, pytriton (Triton Inference Server running a
Python callable through PyTriton: not Triton's native ONNX Runtime backend), litserve, rayserve (Ray
Serve, the server of AWS's Ray Serve inference containers and of KubeRay).
"""

from __future__ import annotations

import importlib

from deploybench.stacks.base import (
    Endpoint,
    Stack,
    StackLaunch,
    StackServer,
    UnknownStackError,
    all_stacks,
    get_stack,
    register,
)

_STACK_MODULES: tuple[str, ...] = (  # one entry per stack module
    "deploybench_stack",
    "torchserve",
    "pytriton_stack",  # not pytriton.py: the app script beside it imports the pytriton package
    "litserve",
    "rayserve_stack",  # not ray.py / serve.py: the app beside it imports the ray package
)
ALL = "all"
RENAMED = {"triton": "pytriton"}  # named for what runs: a Python callable behind Triton, via PyTriton


def _load_all() -> None:
    """Import every stack module so that it registers itself."""
    for module in _STACK_MODULES:
        importlib.import_module(f"deploybench.stacks.{module}")


def resolve_stacks(names: list[str]) -> list[str]:
    """Expand `all` into every installed stack (in registry order); unknown names are an error."""
    stacks = all_stacks()
    resolved: list[str] = []
    for name in (RENAMED.get(n, n) for n in names):
        if name == ALL:
            resolved += [n for n, cls in stacks.items() if cls().availability().ok]
        elif name not in stacks:
            raise UnknownStackError(f"unknown stack {name!r}; known stacks: {', '.join(stacks)}, or all")
        else:
            resolved.append(name)
    return list(dict.fromkeys(resolved))


__all__ = [
    "ALL",
    "Endpoint",
    "Stack",
    "StackLaunch",
    "StackServer",
    "UnknownStackError",
    "all_stacks",
    "get_stack",
    "register",
    "resolve_stacks",
]
