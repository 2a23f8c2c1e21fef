"""The exported environment, read by the SageMaker PyTorch toolkit's own code: the container runs the
measured worker count, and what it cannot run as measured (batching, runtime knobs) is said."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from helpers.report_factory import C5_XLARGE
from sagemaker_inference import environment
from sagemaker_pytorch_serving_container import ts_environment

from deploybench.config import RuntimeKnobs
from deploybench.export.readme import container_notes, hosting_facts, sagemaker_env
from deploybench.results import Candidate, MachineInfo

WINNER = Candidate(
    backend="openvino-int8", workers=2, threads=1, max_batch_size=4, max_delay_ms=2.5, runtime=RuntimeKnobs()
)


def test_the_toolkit_reads_the_measured_workers_and_parses_every_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in sagemaker_env(WINNER).items():
        monkeypatch.setenv(name, value)
    torchserve = ts_environment.TorchServeEnvironment()  # int() of every SAGEMAKER_TS_* value
    assert torchserve.is_env_set()  # so the toolkit writes the per-model entry from these
    assert (torchserve.min_workers, torchserve.max_workers) == (2, 2)  # not the default 1
    assert torchserve.batch_size == 1  # the toolkit calls the handler per request: no batching
    assert environment.Environment().model_server_workers == "2"
    assert environment.Environment().model_server_workers == str(torchserve.max_workers)


def test_what_the_container_cannot_run_as_measured_is_said() -> None:
    (batching,) = container_notes(WINNER)
    assert "up to 4 within 2.5 ms" in batching and "serves batch 1" in batching
    pinned = WINNER.model_copy(update={"max_batch_size": 1, "runtime": RuntimeKnobs(overlap=True)})
    assert container_notes(pinned) == [
        "runtime knobs deploybench's server set and this container does not: overlap"
    ]
    assert container_notes(WINNER.model_copy(update={"max_batch_size": 1, "max_delay_ms": 0.0})) == []


def test_a_sagemaker_target_is_priced_as_a_hosting_type_that_exists_never_an_ec2_rate() -> None:
    def choice(machine: MachineInfo) -> SimpleNamespace:
        return SimpleNamespace(trial=SimpleNamespace(machine=machine))

    hosted = hosting_facts(choice(C5_XLARGE), 100.0)  # type: ignore[arg-type]
    assert hosted["instance"] == "ml.c5.xlarge" and hosted["hosting_notes"] == []
    assert hosted["hosting_cost"] == pytest.approx(0.204 / (100.0 * 3600) * 1e6)
    milan = MachineInfo(label="c6a.large", instance="c6a.large", cpu_family="milan", cores=2)
    ec2 = hosting_facts(choice(milan), 30.0)  # type: ignore[arg-type]
    assert ec2["instance"] == "YOUR-INSTANCE-TYPE" and ec2["hosting_cost"] is None  # no ml.c6a.large
    assert "no SageMaker hosting type" in ec2["hosting_notes"][0]
    spr = MachineInfo(label="c7i.large", instance="c7i.large", cpu_family="sapphire-rapids", cores=2)
    larger = hosting_facts(choice(spr), 30.0)  # type: ignore[arg-type]
    assert larger["instance"] == "ml.c7i.xlarge" and larger["hosting_cost"] is None  # 4 vCPUs, not 2
    assert "measure on it" in larger["hosting_notes"][0]
