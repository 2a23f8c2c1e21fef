"""Fixtures for the load generator's tests (the loopback server, server_url, is in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def payloads() -> list[bytes]:
    return [b"x" * 21_000, b"y" * 20_000]
