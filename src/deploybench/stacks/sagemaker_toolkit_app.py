"""The SageMaker PyTorch container's server, run here: TorchServe started by AWS's own inference
toolkit (sagemaker-pytorch-inference, from PyPI), the way the container's entrypoint starts it.

    python -m deploybench.stacks.sagemaker_toolkit_app MODEL_FOLDER --port 8080

In the container the archive is unpacked into /opt/ml/model, the toolkit writes TorchServe's
configuration to /etc/sagemaker-ts.properties and its model store under the working directory. Only
those places move here, each through the toolkit's own means: SAGEMAKER_BASE_DIR (its variable for
/opt/ml) names a scratch folder whose model/ is the archive, the properties file is written into that
folder (the module's path constant, set before it starts), and the working directory is that folder.
Everything else is the toolkit's code, unchanged: how it parses the SAGEMAKER_* variables, the
properties it generates (per-model workers, batch size and delay), the torchserve command, and the
handler service that calls the archive's code/inference.py once per request. The port comes through
SAGEMAKER_BIND_TO_PORT, as on SageMaker. code/requirements.txt is installed only when asked: the
container installs it on every start, here it would change the caller's environment.
"""

from __future__ import annotations

import argparse
import importlib.resources
import importlib.util
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

TOOLKIT = "sagemaker_pytorch_serving_container"
INSTALL = "install with pip install sagemaker-pytorch-inference==2.0.25 torchserve==0.12.0 and Java 17"


def stage(model_dir: Path) -> Path:
    """A scratch SAGEMAKER_BASE_DIR whose model/ is the archive's folder (a link: nothing copied)."""
    base = Path(tempfile.mkdtemp(prefix="deploybench-sagemaker-"))
    (base / "model").symlink_to(model_dir.resolve(), target_is_directory=True)
    return base


def prepare_environment(base: Path, port: int) -> None:
    """What the container's environment says, pointed here: /opt/ml, the port, and this Python's
    torchserve first on PATH (its workers run with the interpreter of the torchserve launcher)."""
    os.environ["SAGEMAKER_BASE_DIR"] = str(base)
    os.environ["SAGEMAKER_BIND_TO_PORT"] = str(port)
    os.environ["PATH"] = _path()
    os.chdir(base)  # the toolkit's model store is <working directory>/.sagemaker/ts/models


def provide_pkg_resources() -> None:
    """The toolkit asks pkg_resources (gone from setuptools 81 on) for one thing, the path of its own
    package files: give it that alone where setuptools no longer does, by pkg_resources' own joining
    rule (a leading '/' still means inside the package)."""
    try:
        import pkg_resources  # noqa: F401 - present with setuptools < 81, as in AWS's containers
    except ImportError:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, resource: str) -> str:
            return str(importlib.resources.files(package).joinpath(*filter(None, resource.split("/"))))

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim


def run_toolkit(base: Path, install_requirements: bool) -> None:
    """Import the toolkit only now (its paths are read from the environment at import), move the
    properties file into `base`, and run the container's entrypoint until TorchServe exits."""
    provide_pkg_resources()
    from sagemaker_inference import model_server
    from sagemaker_pytorch_serving_container import serving, torchserve

    torchserve.TS_CONFIG_FILE = str(base / "sagemaker-ts.properties")
    if not install_requirements:
        model_server.REQUIREMENTS_PATH = str(base / "requirements-not-installed.txt")
    serving.main()


def toolkit_missing() -> str | None:
    """Why the toolkit cannot run here (None: it can): its package, TorchServe's launcher, Java."""
    if importlib.util.find_spec(TOOLKIT) is None or shutil.which("torchserve", path=_path()) is None:
        return f"the SageMaker PyTorch toolkit or TorchServe is not installed: {INSTALL}"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return f"TorchServe needs Java: {INSTALL}"
    return None


def _path() -> str:
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", type=Path, help="the unpacked model.tar.gz (what /opt/ml/model holds)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--install-requirements", action="store_true", help="pip install code/requirements.txt"
    )
    args = parser.parse_args(argv)
    base = stage(args.model_dir)
    try:
        prepare_environment(base, args.port)
        print(f"sagemaker toolkit: TorchServe for {args.model_dir} on port {args.port}", flush=True)
        run_toolkit(base, args.install_requirements)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
