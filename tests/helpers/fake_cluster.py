"""A real Ray cluster on this machine, as the `cluster` fixture (tests/study/executors/conftest.py)
starts it: which instance type each node was labelled with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
