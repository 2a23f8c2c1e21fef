"""Small real networks for fast tests: entry points `helpers.tiny_models:<function>`."""

from __future__ import annotations

import torch
from torch import nn


def tiny_cnn() -> nn.Module:
    """A conv-BN-ReLU stack with a 1000-way head: compiles in seconds, shaped like an ImageNet classifier."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 1000),
    ).eval()


def not_a_module() -> str:
    return "a string"
