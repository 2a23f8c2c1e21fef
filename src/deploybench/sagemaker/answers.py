"""Comparing two answers of a user's handler, whatever their form (tensor, array, list, dict, JSON).

Two uses: the handler with its own network against the handler with a recording stand-in (the same
computation: same structure and numbers within float32 noise), and the handler with a variant inside
against the same with the original network (parity through the user's code: the same structure,
numbers judged by the precision's limits, texts such as labels counted as agreeing or not).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def _plain(value: Any) -> Any:
    """Tensors as numpy, JSON text/bytes parsed, (body, content type) pairs reduced to the body."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().float().numpy()
    if isinstance(value, bytes | bytearray | str):
        try:
            return json.loads(value)
        except (ValueError, UnicodeDecodeError):
            return value
    return value


@dataclass
class AnswerDiff:
    """How two answers differ: structure first, then numbers and texts."""

    form: str | None = None  # why the structures differ; None when they match
    numbers: int = 0
    largest_difference: float = 0.0  # absolute, over every number
    largest_magnitude: float = 0.0
    texts: int = 0
    texts_agreeing: int = 0

    def describe(self) -> str:
        if self.form is not None:
            return f"answers of another form: {self.form}"
        parts = [f"{self.numbers} numbers differ by at most {self.largest_difference:.3g}"]
        if self.texts:
            parts.append(f"{self.texts_agreeing} of {self.texts} texts agree")
        return "; ".join(parts)


def _numbers(diff: AnswerDiff, a: np.ndarray, b: np.ndarray, where: str) -> None:
    if a.shape != b.shape:
        diff.form = diff.form or f"{where}: shape {a.shape} against {b.shape}"
        return
    if a.size:
        diff.numbers += a.size
        diff.largest_difference = max(diff.largest_difference, float(np.max(np.abs(a - b))))
        diff.largest_magnitude = max(diff.largest_magnitude, float(np.max(np.abs(a))))


def _container(diff: AnswerDiff, a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict):
        if sorted(map(str, a)) != sorted(map(str, b)):
            diff.form = diff.form or f"{where}: keys {sorted(map(str, a))} against {sorted(map(str, b))}"
            return
        for key in a:
            compare(diff, a[key], b[key], f"{where}[{key!r}]")
        return
    if len(a) != len(b):
        diff.form = diff.form or f"{where}: {len(a)} items against {len(b)}"
        return
    for index, (x, y) in enumerate(zip(a, b, strict=True)):
        compare(diff, x, y, f"{where}[{index}]")


def compare(diff: AnswerDiff, a: Any, b: Any, where: str = "answer") -> None:
    """Walk both answers together, noting the first difference of form and every number's gap."""
    a, b = _plain(a), _plain(b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        x, y = np.asarray(a), np.asarray(b)
        if x.dtype.kind in "biuf" and y.dtype.kind in "biuf":
            _numbers(diff, x.astype(np.float64), y.astype(np.float64), where)
        else:
            diff.form = diff.form or f"{where}: {x.dtype} against {y.dtype}"
    elif type(a) is not type(b) and not (isinstance(a, int | float) and isinstance(b, int | float)):
        diff.form = diff.form or f"{where}: {type(a).__name__} against {type(b).__name__}"
    elif isinstance(a, dict | list | tuple):
        _container(diff, a, b, where)
    elif isinstance(a, float | int) and not isinstance(a, bool):
        _numbers(diff, np.array([a], np.float64), np.array([b], np.float64), where)
    else:
        diff.texts += 1
        diff.texts_agreeing += int(a == b)


def diff_answers(a: Any, b: Any) -> AnswerDiff:
    diff = AnswerDiff()
    compare(diff, a, b)
    return diff


def same_answer(a: Any, b: Any, rtol: float, atol: float) -> bool:
    """Same structure, same texts, every number within atol + rtol x the largest magnitude."""
    diff = diff_answers(a, b)
    if diff.form is not None or diff.texts_agreeing != diff.texts:
        return False
    return math.isfinite(diff.largest_difference) and diff.largest_difference <= atol + rtol * max(
        diff.largest_magnitude, 1.0
    )
