"""May a backend's variant stand in for a SageMaker handler's predict_fn? Decided by running it once.

The rule (README, "Study your SageMaker model"): the variant replaces predict_fn when predict_fn is
absent (the PyTorch toolkit's default only calls the model) or, run once on the sample input that
the user's input_fn made, it
  1. calls the model exactly once, with one tensor holding the very values input_fn returned
     (a batch axis of 1 may be added or removed, the dtype and device may change), and
  2. returns what a direct call of the untouched network on that input returns (same values within
     float32 noise; a batch axis of 1 may be dropped; tensor, numpy array or list).
Anything else (softmax or top-k inside predict_fn, test-time augmentation, an ensemble, extra
preprocessing, a second model, a precision change) is "does more": only the handler as is (eager)
is studied, and every output says why. transform_fn always does more: it is one opaque function.

Why run it rather than read its source: an AST rule has to list every harmless spelling
(`with torch.no_grad()`, `.to(device)`, `.unsqueeze(0)`, `model.eval()`, helpers...) and still
cannot see what a called helper does; running it against a recording stand-in and comparing with a
direct call checks exactly the two properties the substitution needs, whatever the spelling. The
stand-in wraps a deep copy, so whatever predict_fn does to the model leaves the real network alone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from deploybench.sagemaker.toolkit import default_predict_fn  # what the server runs without a predict_fn

Returns = Literal["tensor", "ndarray", "list"]
REL_TOLERANCE = 1e-4
ABS_TOLERANCE = 1e-5


@dataclass(frozen=True)
class HandlerCheck:
    """What a SageMaker handler lets deploybench do with a backend's variant, and why."""

    program: str
    replaceable: bool
    reason: str
    returns: Returns = "tensor"
    batch_axis: bool = True  # predict_fn's result keeps the batch axis (N, classes)
    defined: tuple[str, ...] = field(default_factory=tuple)  # the handler functions the user wrote

    @property
    def limit(self) -> str | None:
        """Why only the handler as is (eager) can be studied; None when every backend can be."""
        if self.replaceable:
            return None
        return f"{self.program}: {self.reason}; only your handler as is (eager) is studied"

    @property
    def summary(self) -> str:
        """The one line every output carries about the handler."""
        if self.replaceable:
            return f"{self.program}: {self.reason}: every backend is served behind your input_fn/output_fn"
        return self.limit or ""

    def wrap(self, logits: np.ndarray) -> Any:
        """A variant's (N, classes) logits in the form the user's predict_fn returned its own."""
        out: Any = logits if self.batch_axis else logits[0]
        if self.returns == "tensor":
            return torch.from_numpy(np.ascontiguousarray(out))
        return out.tolist() if self.returns == "list" else out


class RecordingModel(nn.Module):
    """Stands in for the network while predict_fn is checked: records each call, answers as the network."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self.network(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        """Attributes the user's code reads off its model (classes, device...) come from the network."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("network"), name)


def values(data: Any) -> np.ndarray | None:
    """Numbers as float32 numpy (tensors, arrays, nested lists); None for anything else."""
    if isinstance(data, torch.Tensor):
        return data.detach().cpu().float().numpy()
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):
        return None
    return array.astype(np.float32) if array.dtype.kind in "biuf" else None


def _unbatched(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """a and b with equal shapes, dropping a leading axis of 1 from one of them; None if they differ more."""
    if a.shape == b.shape:
        return a, b
    if a.shape == (1, *b.shape):
        return a[0], b
    if b.shape == (1, *a.shape):
        return a, b[0]
    return None


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    paired = _unbatched(a, b)
    return paired is not None and bool(
        np.allclose(paired[0], paired[1], rtol=REL_TOLERANCE, atol=ABS_TOLERANCE)
    )


def as_batch(data: Any) -> np.ndarray:
    """input_fn's value as the float32 NCHW batch a variant predicts on (a lone image gets a batch axis)."""
    array = values(data)
    if array is None:
        raise TypeError(f"input_fn returned a {type(data).__name__}, not an array of numbers")
    return np.ascontiguousarray(array[None] if array.ndim == 3 else array)


def _returns(result: Any) -> Returns:
    if isinstance(result, torch.Tensor):
        return "tensor"
    return "ndarray" if isinstance(result, np.ndarray) else "list"


def _recorded_input(stub: RecordingModel, data: np.ndarray) -> str | None:
    """Why the recorded call breaks rule 1, or None when it keeps it."""
    if len(stub.calls) != 1:
        return f"calls the model {len(stub.calls)} times (rule: exactly once)"
    args, kwargs = stub.calls[0]
    if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
        return "passes the model something other than one tensor"
    if not same_values(values(args[0]), data):  # type: ignore[arg-type]
        return "changes the input before calling the model"
    return None


def check_predict_fn(
    predict_fn: Callable[[Any, Any], Any] | None, network: nn.Module, data: Any, program: str
) -> HandlerCheck:
    """Run predict_fn once on `data` (what input_fn returned) against a recording copy of the network."""
    label = "predict_fn" if predict_fn is not None else "no predict_fn (the toolkit default)"
    stub = RecordingModel(copy.deepcopy(network))
    try:
        result = (predict_fn or default_predict_fn)(data, stub)
    except Exception as exc:  # the user's code: any failure means we cannot vouch for the substitution
        return HandlerCheck(program, False, f"{label} raised {type(exc).__name__} on the sample input")
    expected = values(data)
    if expected is None:
        return HandlerCheck(program, False, f"input_fn returns a {type(data).__name__}, not a tensor")
    broken = _recorded_input(stub, expected)
    if broken is not None:
        return HandlerCheck(program, False, f"predict_fn {broken}")
    with torch.no_grad():
        device = next((p.device for p in network.parameters()), torch.device("cpu"))
        direct = values(network(torch.from_numpy(as_batch(data)).to(device)))  # where model_fn put it
    got = values(result)
    if direct is None or got is None or not same_values(got, direct):
        return HandlerCheck(program, False, "predict_fn changes the model's output (softmax, top-k, ...)")
    reason = "predict_fn only calls the model" if predict_fn is not None else label
    return HandlerCheck(program, True, reason, _returns(result), got.shape == direct.shape)
