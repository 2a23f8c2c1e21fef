"""A real Ray cluster on this machine: a head that does no work and two labelled one-slot nodes.

Started once for the module's tests (about 20 s here); Ray keeps its object store small and reports no
usage statistics. The nodes' workers inherit tests/ on PYTHONPATH, for the tiny model entry point.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parents[1]
LABEL = "deploybench/instance-type"
OBJECT_STORE = 80 * 2**20  # Ray's minimum is ~75 MiB; the study moves a few MB through it


@dataclass
class FakeCluster:
    """The running cluster, and which instance type each node (by Ray node id) was labelled with."""

    cluster: Any  # ray.cluster_utils.Cluster
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add_machine(self, instance: str) -> Any:
        """A node of one machine type, as `ray start --labels=... --resources=...` makes it."""
        node = self.cluster.add_node(
            num_cpus=1,
            labels={LABEL: instance},
            resources={"deploybench_slot": 1},
            object_store_memory=OBJECT_STORE,
        )
        self.labels[node.node_id] = instance
        return node


@pytest.fixture(scope="module")
def cluster() -> Iterator[FakeCluster]:
    pytest.importorskip("ray", reason="the Ray executor's tests need deploybench[ray]")
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        patch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
        head = {"num_cpus": 0, "object_store_memory": OBJECT_STORE, "include_dashboard": False}
        fake = FakeCluster(Cluster(initialize_head=True, head_node_args=head))
        try:
            for instance in ("c7i.large", "c7i.xlarge"):
                fake.add_machine(instance)
            fake.cluster.wait_for_nodes()
            yield fake
        finally:
            fake.cluster.shutdown()


@pytest.fixture(scope="module")
def artifact_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact cache for the module: a variant is built once per node type, not once per study."""
    return tmp_path_factory.mktemp("cache")
