"""The Backend interface, the Variant it builds, and the registry every backend joins.

Adding a backend means one new module in this package with one class decorated by @register.
"""

from __future__ import annotations

import abc
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from deploybench.config import RuntimeKnobs

if TYPE_CHECKING:
    from deploybench.inputs.calibration import CalibrationSet
    from deploybench.models.loaded import LoadedModel


class UnknownBackendError(ValueError):
    """A backend name that no registered backend answers to."""


class BackendUnavailableError(RuntimeError):
    """The backend's library or device is missing on this machine."""


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""  # e.g. "unavailable: no CUDA device" or "pip install openvino"


@dataclass(frozen=True)
class BuildContext:
    """Everything a backend needs to build besides the model itself."""

    threads: int
    example: np.ndarray  # one NCHW float32 batch in the model's input shape
    # preprocessed CHW images, or a CalibrationSet that makes them on first use (build_variant's)
    calibration: list[np.ndarray] | CalibrationSet = field(default_factory=list)
    cache_dir: Path | None = None
    device: str = "cpu"
    runtime: RuntimeKnobs = field(default_factory=RuntimeKnobs)  # streams, spin, pinning, inter-op


# Knobs the server itself applies for every backend (placement, in-flight batches, the image decoder);
# a backend lists in Backend.runtime_knobs the ones its runtime honours on top of these.
SERVER_KNOBS = frozenset({"pin", "front", "streams", "overlap", "decoder"})


class Variant(abc.ABC):
    """A built, runnable form of the model. predict() takes and returns plain numpy arrays.

    predict() may be called from RuntimeKnobs.streams threads at once (a worker's concurrent
    inferences); a variant whose runtime cannot run calls in parallel serialises them itself.
    """

    backend: str
    precision: str  # what the runtime actually runs, read back from it (fp32, bf16, fp16, int8)
    device: str = "cpu"
    build_seconds: float = 0.0
    artifact_bytes: int | None = None
    artifact_path: Path | None = None  # the file a runtime loads (ONNX, IR .xml, TorchScript), if any
    versions: dict[str, str]

    @abc.abstractmethod
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Run a float32 NCHW batch; return float32 logits of shape (N, classes)."""

    def runtime_settings(self) -> dict[str, object]:
        """Thread and stream settings as the runtime reports them (read back, not as requested)."""
        return {}

    def warm_up_sizes(self, max_batch: int) -> list[int]:
        """The batch sizes a server runs once before it answers: twice one (first-call setup), then the
        widest batch it may form. A variant that compiles per shape names every shape it will run."""
        return [1, 1, max_batch]


class Backend(abc.ABC):
    """Builds Variants of one kind (a runtime + precision)."""

    name: ClassVar[str]
    precision: ClassVar[str]  # requested precision; the Variant reports the actual one
    description: ClassVar[str] = ""
    device: ClassVar[str] = "cpu"
    rebuilt_per_process: ClassVar[bool] = False  # True: each server worker compiles its own (re-verified)
    # int8 backends read BuildContext.calibration; the others get none (making it costs seconds: 100
    # photos augmented and preprocessed, through a SageMaker handler's input_fn for its models)
    needs_calibration: ClassVar[bool] = False
    runtime_knobs: ClassVar[frozenset[str]] = frozenset()  # RuntimeKnobs fields the runtime honours

    @classmethod
    def honoured_knobs(cls) -> frozenset[str]:
        """Every RuntimeKnobs field that changes how this backend is served (a search varies only these)."""
        return SERVER_KNOBS | cls.runtime_knobs

    @abc.abstractmethod
    def availability(self) -> Availability:
        """Whether this backend can build here, and if not, why and how to fix it."""

    @abc.abstractmethod
    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        """Build a runnable variant. Raises BackendUnavailableError when availability() is not ok."""


def library_importable(name: str) -> bool:
    """Whether `import name` can work, without importing it (a runtime stays unloaded until a build)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[name] is None, i.e. the import is blocked
        return False


_REGISTRY: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make a backend known by its name."""
    _REGISTRY[cls.name] = cls
    return cls


def all_backends() -> dict[str, type[Backend]]:
    # lazy: the package imports this module; the registry loads every backend on first use
    from deploybench.backends import _load_all

    _load_all()
    return dict(_REGISTRY)


def get_backend(name: str) -> Backend:
    """Instantiate a backend by name; unknown names list the known ones."""
    backends = all_backends()
    if name not in backends:
        known = ", ".join(sorted(backends))
        raise UnknownBackendError(f"unknown backend {name!r}; known backends: {known}")
    return backends[name]()


def honoured_knobs(name: str) -> frozenset[str]:
    """The RuntimeKnobs fields that change how `name` is served (the server's own for unknown names)."""
    cls = all_backends().get(name)
    return cls.honoured_knobs() if cls is not None else SERVER_KNOBS


def available_backends() -> list[str]:
    return [name for name, cls in all_backends().items() if cls().availability().ok]
