"""The cluster the real-pod scenarios run on: ``--cluster local`` (a real kubelet node joined to the local control
plane, ``make e2e-local``) or ``--cluster kind`` (``make e2e``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.scenarios.realpods import PodCluster

ROOT = Path(__file__).resolve().parents[2]
LOCAL_DIR = ROOT / ".e2e-local"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("e2e")
    group.addoption("--cluster", choices=("local", "kind"), default="local", help="where the pods run")
    group.addoption("--image", default="falco-operator:0.1.0", help="the product image (kind: built and loaded)")
    group.addoption("--keep", action="store_true", help="leave the cluster running afterwards (kind only)")


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[PodCluster]:
    if request.config.getoption("--cluster") == "kind":
        from e2e.kind import kind_pod_cluster

        with kind_pod_cluster(request.config.getoption("--image"), keep=request.config.getoption("--keep")) as kind:
            yield kind
        return
    yield from _local_cluster()


def _local_cluster() -> Iterator[PodCluster]:
    from e2e.realnode.podcluster import local_pod_cluster

    with local_pod_cluster(LOCAL_DIR) as local:
        yield local
