"""Can a variant stand in for the network behind this SageMaker handler? Decided by running it.

The rule (docs/sagemaker.md, "Your handler, every backend"): the user's code runs unchanged and a
NetworkStandIn (standin.py) takes the network's place. On each sample request the handler runs twice,
with its own network and with a recording stand-in that computes with that same network. The stand-in
may serve when, on every sample request, the handler
  1. ran with its own network (else the handler itself is broken: a load error, not a refusal),
  2. ran with the stand-in without asking it for what a variant cannot give (standin.py lists that),
  3. answered the same with both (same structure, numbers within float32 noise),
  4. fed the network float tensors of one shape (N, C, H, W) and got one tensor back.
What it fed the network is recorded: the variant is built for that shape, calibrated and checked on
those inputs, whatever the handler did before (PIL, torchvision transforms, several images per request,
several calls per request). Running beats reading the source: no list of harmless spellings can see
what a helper does, while equal answers with the stand-in check exactly what the substitution needs.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from deploybench.sagemaker.answers import diff_answers, same_answer
from deploybench.sagemaker.standin import NetworkStandIn

HandlerCall = Callable[[Any, bytes], Any]  # (model object, request body) -> the handler's answer
REL_TOLERANCE = 1e-4
ABS_TOLERANCE = 1e-5


class HandlerFailedError(ValueError):
    """The user's handler fails on its own sample request with its own network."""


@dataclass(frozen=True)
class HandlerCheck:
    """What a SageMaker handler lets deploybench do with a backend's variant, and why."""

    program: str
    replaceable: bool
    reason: str
    defined: tuple[str, ...] = field(default_factory=tuple)  # the handler functions the user wrote
    input_shape: tuple[int, ...] | None = None  # what the handler feeds the network, batch axis off
    calls_per_request: int = 1  # network calls one sample request makes (test-time augmentation: 2+)
    rows_per_call: int = 1  # images in one call (several images per request: 2+)

    @property
    def limit(self) -> str | None:
        """Why only the handler as is (eager) can be studied; None when every backend can be."""
        if self.replaceable:
            return None
        return f"{self.program}: {self.reason}; only your handler as is (eager) is studied"

    @property
    def summary(self) -> str:
        """The one line every output carries about the handler."""
        if not self.replaceable:
            return self.limit or ""
        use = f"{self.calls_per_request} call(s) of {self.rows_per_call} image(s) per request"
        return f"{self.program}: {self.reason} ({use}); every backend serves behind your unchanged code"


class Recorder:
    """The recording stand-in's network: runs the real one, keeps every input it was fed."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.device = next((p.device for p in network.parameters()), torch.device("cpu"))
        self.inputs: list[np.ndarray] = []
        self.problem: str | None = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.inputs.append(batch.copy())
        with torch.no_grad():
            out = self.network(torch.from_numpy(batch).to(self.device))
        if not isinstance(out, torch.Tensor):
            self.problem = f"the network returns a {type(out).__name__}; a variant returns one tensor"
            raise TypeError(self.problem)
        return out.detach().cpu().float().numpy()


def traceback_tail(exc: BaseException, lines: int = 6) -> str:
    """The last lines of a traceback: where in the user's code it failed, for the log."""
    text = "".join(traceback.format_exception(exc)).rstrip().splitlines()
    return "\n".join(text[-lines:])


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _record_one(
    call: HandlerCall, network: nn.Module, own: nn.Module, body: bytes
) -> tuple[list[np.ndarray], str | None]:
    """(inputs the handler fed its network, why a stand-in cannot serve it or None) for one request.
    `own` is the handler's own copy of the network: what the handler does to it (`.half()`) stays there."""
    try:
        expected = call(own, body)
    except Exception as exc:  # the user's code, with its own network: the handler itself is broken
        raise HandlerFailedError(f"your handler fails on a sample request: {_one_line(exc)}") from exc
    recorder = Recorder(network)
    stand_in = NetworkStandIn(recorder, network, None, "recording")
    try:
        got = call(stand_in, body)
    except Exception as exc:  # the user's code with the stand-in inside
        why = stand_in.refusals[:1] or [recorder.problem or f"your handler raises {_one_line(exc)}"]
        return recorder.inputs, f"{why[0]} (with the network stood in)"
    if stand_in.refusals or recorder.problem:
        return recorder.inputs, (stand_in.refusals[:1] or [recorder.problem])[0]
    if not same_answer(expected, got, REL_TOLERANCE, ABS_TOLERANCE):
        why = diff_answers(expected, got).describe()
        return recorder.inputs, f"your handler answers differently when its network is stood in for ({why})"
    return recorder.inputs, None


def _shape_problem(inputs: Sequence[np.ndarray]) -> str | None:
    if not inputs:
        return "your handler never calls the network on the sample requests"
    shapes = sorted({tuple(x.shape[1:]) for x in inputs})
    if len(shapes) > 1:
        return f"your handler feeds the network several shapes {shapes}: a variant takes one"
    if len(shapes[0]) != 3:
        return (
            f"your handler feeds the network {tuple(inputs[0].shape)}; the backends take images (N, C, H, W)"
        )
    return None


def check_handler(
    call: HandlerCall, network: nn.Module, bodies: Sequence[bytes], program: str, defined: tuple[str, ...]
) -> tuple[HandlerCheck, np.ndarray | None]:
    """(the verdict, every input the handler fed its network on the sample requests, or None)."""
    recorded: list[np.ndarray] = []
    per_request: list[int] = []
    own = copy.deepcopy(network)
    for body in bodies:
        inputs, problem = _record_one(call, network, own, body)
        if problem is not None:
            return HandlerCheck(program, False, problem, defined), None
        recorded += inputs
        per_request.append(len(inputs))
    problem = _shape_problem(recorded)
    if problem is not None:
        return HandlerCheck(program, False, problem, defined), None
    samples = np.concatenate(recorded).astype(np.float32)
    check = HandlerCheck(
        program,
        True,
        "a variant stands in for the network model_fn returned",
        defined,
        tuple(int(d) for d in recorded[0].shape[1:]),
        max(per_request),
        int(recorded[0].shape[0]),
    )
    return check, samples


class Captured(BaseException):  # not Exception: the user code's `except Exception` must let it through
    """Raised by a capturing stand-in at the first network call: the input is all that was wanted."""

    def __init__(self, batch: np.ndarray) -> None:
        super().__init__("captured")
        self.batch = batch


def _capture(batch: np.ndarray) -> np.ndarray:
    raise Captured(batch.copy())


def network_input(call: HandlerCall, network: nn.Module, body: bytes) -> np.ndarray:
    """The first batch the handler feeds its network for `body`, without running the network."""
    try:
        call(NetworkStandIn(_capture, network, None, "capturing"), body)
    except Captured as captured:
        return captured.batch
    raise HandlerFailedError("your handler did not call the network for a calibration photo")
