"""One exporter per runtime: which files of a built variant go to the archive root, and how the
generated inference.py must load and run them (the settings the study measured, read from the same
code the backends use, so the exported process runs what was measured).

Adding a runtime means one class here with @exporter and one block in templates/inference.py.j2.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from deploybench.backends.base import Variant, get_backend
from deploybench.cache import installed_versions


@dataclass(frozen=True)
class RuntimePlan:
    """What the archive needs for one variant: root files, template settings, one pinned requirement."""

    runtime: str
    files: dict[str, Path]
    settings: dict[str, Any] = field(default_factory=dict)
    requirement: str = ""


class Exporter(abc.ABC):
    runtime: ClassVar[str]
    backends: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def plan(self, variant: Variant, threads: int) -> RuntimePlan:
        """The files and settings of `variant` (built with `threads` intra-op threads)."""


_EXPORTERS: dict[str, Exporter] = {}


def exporter(cls: type[Exporter]) -> type[Exporter]:
    for backend in cls.backends:
        _EXPORTERS[backend] = cls()
    return cls


def exportable_backends() -> set[str]:
    return set(_EXPORTERS)


def plan_for(variant: Variant, threads: int) -> RuntimePlan:
    impl = _EXPORTERS.get(variant.backend)
    if impl is None:
        raise KeyError(variant.backend)
    if variant.artifact_path is None or not Path(variant.artifact_path).is_file():
        raise FileNotFoundError(f"{variant.backend}: the variant has no artifact file on disk")
    return impl.plan(variant, threads)


def _pin(package: str) -> str:
    return f"{package}=={installed_versions([package])[package]}"


@exporter
class OnnxRuntimeExporter(Exporter):
    runtime = "onnxruntime"
    backends = ("onnxruntime", "onnxruntime-int8")

    def plan(self, variant: Variant, threads: int) -> RuntimePlan:
        # session options as onnxruntime_backend.session_options builds them
        settings = {"providers": list(getattr(variant, "providers", ["CPUExecutionProvider"]))}
        return RuntimePlan(
            self.runtime, {"model.onnx": Path(variant.artifact_path)}, settings, _pin("onnxruntime")
        )  # type: ignore[arg-type]


@exporter
class OpenVinoExporter(Exporter):
    runtime = "openvino"
    backends = ("openvino", "openvino-bf16", "openvino-int8")

    def plan(self, variant: Variant, threads: int) -> RuntimePlan:
        # lazy: OpenVINO loads only for an OpenVINO export
        from deploybench.backends.openvino_backend import compile_config

        xml = Path(variant.artifact_path)  # type: ignore[arg-type]
        hint = getattr(get_backend(variant.backend), "precision_hint", None)
        config = compile_config(threads, hint, xml.parent)
        config.pop("CACHE_DIR")  # a path of this machine; the container compiles at start-up
        config.pop("INFERENCE_NUM_THREADS")  # set from OMP_NUM_THREADS at start-up (README)
        files = {"model.xml": xml, "model.bin": xml.with_suffix(".bin")}
        return RuntimePlan(self.runtime, files, {"config": config}, _pin("openvino"))


@exporter
class TorchScriptExporter(Exporter):
    runtime = "torchscript"
    backends = ("torchscript",)

    def plan(self, variant: Variant, threads: int) -> RuntimePlan:
        torch = installed_versions(["torch"])["torch"]
        requirement = (
            f"# torch=={torch} (measured with it; the SageMaker PyTorch container provides torch: "
            "choose the image with this version)"
        )
        return RuntimePlan(self.runtime, {"model.pt": Path(variant.artifact_path)}, {}, requirement)  # type: ignore[arg-type]
