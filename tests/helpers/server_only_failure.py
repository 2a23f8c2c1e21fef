"""A model entry point (helpers.server_only_failure:build) that builds in the study process but fails
inside the server it is served by.

It stands for the real-world case of a model that loads in a notebook but not in the serving
environment (a missing file, a bad device); the study must record the trial as failed and go on.
"""

from __future__ import annotations

import sys

import torch
from torch import nn


def build() -> nn.Module:
    if "serve" in sys.argv:
        raise RuntimeError("weights file missing in the serving environment")
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)
    )
