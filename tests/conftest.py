"""Fixtures that tests in several folders use. pyproject puts tests/ on sys.path, so the shared helpers
(tests/helpers/) import as `helpers.<module>` from every test folder and from this file.

Imports that need torch stay inside the fixtures: the torch-free CI job (.ci/other_python.sh) loads
this file too.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import TINY
from helpers.load_support import LOOPBACK_SERVER, free_port, wait_listening
from helpers.report_factory import cpu_study_trials, write_study

from deploybench.config import ModelSpec
from deploybench.inputs.calibration import parity_inputs
from deploybench.lifetime import die_with_parent
from deploybench.load.noise import NOISE_DIR_ENV
from deploybench.results import TrialRecord

if TYPE_CHECKING:
    import numpy as np

    from deploybench.models.loaded import LoadedModel


@pytest.fixture(autouse=True, scope="session")
def _own_noise_records(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every point interval reads this machine's between-run record (deploybench.load.noise): the
    tests, and the processes they start, read an empty folder of their own, never the user's cache
    (a test that records one points $DEPLOYBENCH_NOISE_DIR at its own tmp_path)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(NOISE_DIR_ENV, str(tmp_path_factory.mktemp("noise-records")))
        yield


@pytest.fixture(autouse=True)
def _own_noise_record_per_test(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study's runoff adds to the record: each test reads and writes a folder of its own, so no test
    sees what one that ran before it measured (the suite passes in any order). Module-scoped studies
    set up before this runs write into the session's folder above."""
    monkeypatch.setenv(NOISE_DIR_ENV, str(tmp_path_factory.mktemp("noise")))


# Models for the backend and variant tests (session-scoped: loaded once)


@pytest.fixture(scope="session")
def effnet() -> LoadedModel:
    """The pretrained EfficientNet-Lite0: a trained net, so parity's top-1 agreement means something."""
    from deploybench.models.sources import load_model

    return load_model(ModelSpec(source="efficientnet-lite0"))


@pytest.fixture(scope="session")
def effnet_inputs() -> np.ndarray:
    return parity_inputs(count=16)


@pytest.fixture(scope="session")
def effnet_reference(effnet: LoadedModel, effnet_inputs: np.ndarray) -> np.ndarray:
    from deploybench.models.sources import logits_for

    return logits_for(effnet, effnet_inputs)


@pytest.fixture(scope="session")
def tiny() -> LoadedModel:
    from deploybench.models.sources import load_model

    return load_model(ModelSpec(source=TINY))


@pytest.fixture(scope="session")
def shared_cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact cache for the session, so the ONNX export of the trained model happens once."""
    return tmp_path_factory.mktemp("artifact-cache")


# The load generator's test server


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """Base URL of the loopback test server (see helpers/loopback_server.py for its routes)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(LOOPBACK_SERVER), str(port)],
        preexec_fn=die_with_parent,  # noqa: PLW1509 - dies with the test process, even by SIGKILL
    )
    try:
        wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# Study folders built from real TrialRecords (see helpers/report_factory.py)


@pytest.fixture
def cpu_trials() -> list[TrialRecord]:
    return cpu_study_trials()


@pytest.fixture
def study_dir(tmp_path: Path, cpu_trials: list[TrialRecord]) -> Path:
    return write_study(tmp_path / "study", cpu_trials)
