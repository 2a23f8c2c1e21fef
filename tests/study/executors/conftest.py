"""A real Ray cluster on this machine: a head that does no work and two labelled one-slot nodes.

Started once for the module's tests (about 20 s here); Ray keeps its object store small and reports no
usage statistics. The nodes' workers inherit tests/ on PYTHONPATH, for the tiny model entry point.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import TESTS
from helpers.fake_cluster import OBJECT_STORE, FakeCluster


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
