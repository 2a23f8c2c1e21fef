"""The export targets by name, and which one a trial's serving stack deploys as by default.

A trial is deployed as measured only by the target that runs its stack: deploybench's server is the
container target, Ray Serve the sagemaker-rayserve archive, TorchServe the SageMaker PyTorch
container (TorchServe inside). LitServe and PyTriton have no target: exporting their winner to
another stack would deploy figures nobody measured, so the default refuses and says so.
"""

from __future__ import annotations

from deploybench.report.deployable import CONTAINER, SAGEMAKER_PYTORCH, SAGEMAKER_RAYSERVE
from deploybench.results import DEFAULT_STACK

# container: deploybench's own server in a SageMaker bring-your-own container; sagemaker-pytorch: the
# SageMaker PyTorch (TorchServe) container's archive; sagemaker-rayserve: AWS's Ray Serve container's
# archive, and a KubeRay RayService
TARGETS = (CONTAINER, SAGEMAKER_PYTORCH, SAGEMAKER_RAYSERVE)
STACK_TARGETS = {DEFAULT_STACK: CONTAINER, "rayserve": SAGEMAKER_RAYSERVE, "torchserve": SAGEMAKER_PYTORCH}


def stack_target(stack: str) -> str | None:
    """The target that runs `stack` as the study ran it (None: no target does)."""
    return STACK_TARGETS.get(stack)
