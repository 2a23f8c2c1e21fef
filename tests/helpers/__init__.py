"""Shared test helpers, imported as `helpers.<module>` from any test folder (pyproject puts tests/ on
sys.path). A subprocess that imports one (a model entry point such as TINY, loaded by a server worker
or a Ray node) needs TESTS on its PYTHONPATH."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).parents[1]
TINY = "helpers.tiny_models:tiny_cnn"  # the tiny model's source (helpers/tiny_models.py; torch-free to name)
