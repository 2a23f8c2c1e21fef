"""SageMaker's handler contract: how code/<program>.py is found, imported and checked, and how its
functions are bound (model_fn, input_fn, predict_fn, output_fn, transform_fn).

One home for the loader (models/sagemaker.py), the server (serve/) and export, so all three read a
handler the same way SageMaker does.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

THREE_STEPS = ("input_fn", "predict_fn", "output_fn")
DEFAULT_PROGRAM = "inference.py"


class HandlerContractError(ValueError):
    """The user's inference.py breaks the contract (reported at start-up, before serving)."""


def program_name(env: Mapping[str, str]) -> tuple[str, bool]:
    """(file name in code/, whether SAGEMAKER_PROGRAM chose it); "inference" means inference.py."""
    program = env.get("SAGEMAKER_PROGRAM", "").strip()
    if not program:
        return DEFAULT_PROGRAM, False
    if Path(program).name != program:
        raise HandlerContractError(f"SAGEMAKER_PROGRAM={program!r} must be a file name inside code/")
    return (program if program.endswith(".py") else f"{program}.py"), True


def load_user_module(path: Path) -> ModuleType:
    """Import code/<program>.py as SageMaker does: code/ first on sys.path, then import by its own name,
    so it sits in sys.modules (dataclasses, pickling and `import inference` from helpers work)."""
    code_dir = path.parent.resolve()
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    name = path.stem
    taken = sys.modules.get(name)
    if taken is not None and not _defined_in(taken, code_dir):
        raise HandlerContractError(
            f"{path.name}: the module name {name!r} is already taken by {taken!r}; rename the handler file"
        )
    module = importlib.import_module(name)
    if not _defined_in(module, code_dir):
        raise HandlerContractError(f"{path.name}: `import {name}` finds {module!r}; rename the handler file")
    check_contract(module, path)
    return module


def _defined_in(module: ModuleType, folder: Path) -> bool:
    origin = getattr(module, "__file__", None)
    return origin is not None and Path(origin).resolve().parent == folder


def check_contract(module: ModuleType, path: Path) -> None:
    defined = [name for name in THREE_STEPS if callable(getattr(module, name, None))]
    if callable(getattr(module, "transform_fn", None)) and defined:
        raise HandlerContractError(
            f"{path}: transform_fn cannot be combined with {', '.join(defined)} (SageMaker contract)"
        )


def check_contract_source(path: Path) -> None:
    """The same contract check from the source alone, so the front can refuse before spawning workers."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise HandlerContractError(f"{path}: cannot be read as Python: {exc}") from exc
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    defined = [name for name in THREE_STEPS if name in names]
    if "transform_fn" in names and defined:
        raise HandlerContractError(
            f"{path}: transform_fn cannot be combined with {', '.join(defined)} (SageMaker contract)"
        )


def bind(fn: Callable[..., Any], base_args: int, context: Any) -> Callable[..., Any]:
    """A callable taking just the base arguments, adding `context` when the user's function declares one
    more parameter (the toolkit counts every parameter; any other count is a start-up error here,
    where SageMaker would fail every request with a TypeError)."""
    try:
        count = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return fn
    if count == base_args:
        return fn
    if count == base_args + 1:
        return lambda *args: fn(*args, context)
    name = getattr(fn, "__name__", "handler function")
    raise HandlerContractError(
        f"{name} takes {count} arguments; SageMaker passes {base_args} ({base_args + 1} with context)"
    )
