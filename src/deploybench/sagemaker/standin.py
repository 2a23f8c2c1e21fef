"""The network's stand-in: what the user's handler gets as its model when a variant serves it.

The rule (docs/sagemaker.md, "Your handler, every backend"): deploybench substitutes the network, not
the handler. The user's input_fn / predict_fn / output_fn (or transform_fn) run unchanged and receive
this object where model_fn's network would be. Calling it (or its forward) with one float tensor
runs the variant on that batch and answers a float32 tensor on the input's device, so softmax, top-k,
several calls (test-time augmentation), several images per call, `.to(device)`, `.eval()` and
`torch.no_grad()` keep working. `parameters()` and `buffers()` answer from the network model_fn loaded
(handlers read them for the device). What a variant cannot give is refused with the reason, never
served silently: reading a submodule or a weight, calling a method other than forward, a change of
precision (`.half()`), keyword or several arguments, a shape other than the one the variant was built
for. Every refusal is also kept in `refusals`, so a handler that catches the error is still seen.

This file is self-contained (torch and numpy only): `deploybench export` copies it next to the user's
code, so the exported archive runs the very stand-in the study measured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

Run = Callable[[np.ndarray], np.ndarray]  # a float32 (N, *shape) batch in, the network's output out
DEVICE_PROBES = frozenset({"parameters", "buffers", "named_parameters", "named_buffers"})
PRECISION_CHANGES = (torch.float16, torch.bfloat16, torch.float64)
REFUSED_METHODS = frozenset(  # looked up on every attribute access: a hash, not a scan
    {
        "half",
        "bfloat16",
        "double",
        "state_dict",
        "load_state_dict",
        "modules",
        "children",
        "named_modules",
        "named_children",
        "apply",
        "register_forward_hook",
        "register_forward_pre_hook",
    }
)


class StandInError(RuntimeError):
    """The handler asked the network for something a compiled variant cannot give."""


class NetworkStandIn(nn.Module):
    """Runs `run` where the handler calls its network; `original` answers attribute reads."""

    def __init__(self, run: Run, original: Any, input_shape: tuple[int, ...] | None, name: str) -> None:
        super().__init__()
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_original", original)
        object.__setattr__(self, "_input_shape", input_shape)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "refusals", [])
        object.__setattr__(self, "_spent", threading.local())  # per request thread: seconds in the network

    def _refuse(self, reason: str) -> StandInError:
        self.refusals.append(reason)
        return StandInError(f"the {self._name} variant stands in for your network and cannot: {reason}")

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
            kinds = [type(a).__name__ for a in args] + [f"{k}=" for k in kwargs]
            raise self._refuse(f"the network is called with ({', '.join(kinds)}), not one tensor")
        batch = args[0]
        if not batch.is_floating_point():
            raise self._refuse(f"the network is called with a {batch.dtype} tensor, not a float one")
        shape = tuple(batch.shape[1:])
        if self._input_shape is not None and shape != self._input_shape:
            raise self._refuse(
                f"the network is called with shape {tuple(batch.shape)}; the variant takes "
                f"(N, {', '.join(map(str, self._input_shape))})"
            )
        start = time.perf_counter()
        array = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        answer = torch.from_numpy(np.asarray(self._run(array))).to(batch.device)
        self._spent.seconds = getattr(self._spent, "seconds", 0.0) + time.perf_counter() - start
        return answer

    def take_network_seconds(self) -> float:
        """Seconds this thread spent in network calls since the last take (the server's Server-Timing
        splits predict_fn into the handler's own work and the network's, batch wait included)."""
        seconds = getattr(self._spent, "seconds", 0.0)
        self._spent.seconds = 0.0
        return seconds

    def to(self, *args: Any, **kwargs: Any) -> NetworkStandIn:
        dtypes = [a for a in (*args, kwargs.get("dtype")) if isinstance(a, torch.dtype)]
        if any(d in PRECISION_CHANGES for d in dtypes):
            raise self._refuse(f"the network is cast to {dtypes[0]}")
        return self

    def train(self, mode: bool = True) -> NetworkStandIn:
        return self

    def _apply(self, fn: Any, recurse: bool = True) -> NetworkStandIn:
        """cpu(), cuda(), float(): the variant runs where it was built; answers go to the input's device."""
        return self

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        return self._original.parameters(recurse)

    def buffers(self, recurse: bool = True) -> Iterator[torch.Tensor]:
        return self._original.buffers(recurse)

    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, nn.Parameter]]:
        return self._original.named_parameters(*args, **kwargs)

    def named_buffers(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, torch.Tensor]]:
        return self._original.named_buffers(*args, **kwargs)

    def __getattribute__(self, name: str) -> Any:
        if name in REFUSED_METHODS:
            raise object.__getattribute__(self, "_refuse")(f"the handler uses the network's {name}()")
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:
        """Only reached for names the stand-in lacks: plain data (class names, a device) comes from
        the original; a submodule, a weight or a method of it cannot be had from a variant."""
        value = getattr(object.__getattribute__(self, "_original"), name)
        if isinstance(value, nn.Module | torch.Tensor):
            raise self._refuse(f"the handler reads the network's {name!r}")
        if callable(value) and not isinstance(value, type):
            raise self._refuse(f"the handler calls the network's {name}()")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise self._refuse(f"the handler sets the network's {name!r}")

    def extra_repr(self) -> str:
        return f"{self._name} variant standing in for {type(self._original).__name__}"
