"""Helpers for the serving-stack tests: the model every stack serves, and a stack or a skip."""

from __future__ import annotations

import os

import pytest

from deploybench.config import ModelSpec
from deploybench.stacks import Stack, get_stack

MODEL = ModelSpec(source="efficientnet-lite0", weights="pretrained")


def installed(name: str) -> Stack:
    """The stack, or a skip saying how to install it (under CI, env CI set, a missing stack is a failure)."""
    stack = get_stack(name)
    availability = stack.availability()
    if not availability.ok:
        if os.environ.get("CI"):
            pytest.fail(f"{name}: {availability.reason}")
        pytest.skip(availability.reason)
    return stack
