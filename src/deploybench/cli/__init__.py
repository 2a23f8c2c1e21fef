"""Typer app. Thin: parse, call the library, print with Rich. One module per command group.

Each command module defines its commands on `app` (imported from deploybench.cli.app) and is
listed in _COMMAND_MODULES; every command offers --json for scripts.
"""

from __future__ import annotations

import importlib

from deploybench.cli.app import app, console

_COMMAND_MODULES: tuple[str, ...] = (
    "serve",
    "variants",
    "load",
    "report",
    "run",
    "stacks",
    "export",
    "check",
)


def _load_commands() -> None:
    for module in _COMMAND_MODULES:
        importlib.import_module(f"deploybench.cli.{module}")


_load_commands()

__all__ = ["app", "console"]
