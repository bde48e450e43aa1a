"""Artifact status with 20 agent processes on 20 simulated nodes (real Falco on one, stand-ins on the others),
on a control plane of its own: writes to the shared Rulesfile do not grow with the number of nodes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio
import pytest

from e2e.agent import falco_pods, rule, rulesfile
from e2e.audit import AuditMark, after_last_report, describe
from e2e.controlplane import ControlPlane
from e2e.falco import FalcoBinaries
from e2e.fleet import agent_fleet
from e2e.kube import call, request
from e2e.operator import RunningOperator, plane_with_crds, run_operator
from e2e.wait import wait_for
from tests.integration.agent_support import ARTIFACT_API, create, patch

Json = dict[str, Any]
pytestmark = pytest.mark.anyio
NODES = [f"node{index:02d}" for index in range(1, 21)]
QUIET = "evt.type = open and proc.name = nope"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with plane_with_crds(tmp_path_factory.mktemp("plane20"), NODES) as started:
        yield started


@pytest.fixture(scope="module")
def operator(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOperator]:
    with run_operator(plane, tmp_path_factory.mktemp("operator20")) as running:
        yield running


@pytest.fixture
async def admin(plane: ControlPlane) -> AsyncIterator[kr8s.asyncio.Api]:
    client = await kr8s.asyncio.api(kubeconfig=str(plane.kubeconfig), namespace="default")
    yield client
    if client._session is not None:
        await client._session.aclose()


async def status_of(api: kr8s.asyncio.Api, namespace: str, name: str) -> Json:
    answer, body = await request(api, "GET", f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles/{name}")
    return (body.get("status") or {}) if answer == 200 and isinstance(body, dict) else {}


def programmed(status: Json) -> str | None:
    return next((c["status"] for c in status.get("conditions") or [] if c["type"] == "Programmed"), None)


def counts(generation: int, targeted: int, installed: int, loaded: int, state: str) -> Any:
    def accept(status: Json) -> bool:
        nodes = status.get("nodes") or {}
        return bool(
            status.get("observedGeneration") == generation and programmed(status) == state
            and (nodes.get("targeted"), nodes.get("installed"), nodes.get("loaded")) == (targeted, installed, loaded)
        )  # fmt: skip

    return accept


async def test_twenty_nodes_one_writer_few_writes_and_counts_that_follow_pods_and_nodes(
    plane: ControlPlane, operator: RunningOperator, admin: kr8s.asyncio.Api, tmp_path: Path,
    falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    namespace = "scale"
    await call(admin, "POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    pods = await falco_pods(admin, namespace, "falco", nodes=len(NODES))
    await create(admin, namespace, rulesfile("shared", rule("shared", QUIET)))
    async with agent_fleet(plane, tmp_path, namespace, "falco", pods, NODES, binaries=falco_binaries) as fleet:
        agents = fleet.agents
        probe = partial(status_of, admin, namespace, "shared")
        await wait_for(probe, counts(1, 20, 20, 20, "True"), timeout=60, what="20/20 installed and loaded")

        mark = AuditMark.now(plane.state.audit_log)
        changed = {"spec": {"inlineRules": rule("shared", QUIET + "2")}}
        started = time.monotonic()
        await patch(admin, namespace, "Rulesfile", "shared", changed)
        await wait_for(probe, counts(2, 20, 20, 20, "True"), timeout=60, what="generation 2 on 20 nodes")
        print(f"\nchange to Programmed with 20/20 loaded: {time.monotonic() - started:.1f} s")
        await anyio.sleep(3)  # late writes for this change would land within this
        writes = [w for w in mark.writes_since(namespace=namespace)
                  if w["objectRef"].get("resource") == "rulesfiles"]  # fmt: skip
        status_writes = [w for w in writes if w["objectRef"].get("subresource") == "status"]
        print(f"\nwrites to the Rulesfile for one change at 20 nodes: {len(status_writes)} status, "
              f"{len(writes) - len(status_writes)} spec")  # fmt: skip
        assert len(status_writes) <= 3, describe(status_writes)
        # How soon the last status write follows the last report is a figure for bench/ (docs/performance.md), not
        # an assertion here: on a busy machine a wall-clock bound measures the neighbours. tests/unit/
        # test_status_coalescing.py checks the decision that makes it short.
        delay = after_last_report(mark.writes_since(namespace=namespace), status_writes)
        print(f"\nlast status write {delay:.2f} s after the last report write")
        obj = await call(admin, "GET", f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles/shared")
        assert not obj["metadata"].get("finalizers")

        # Five agents' pods go: their reports are garbage-collected; the DaemonSet's new pods have no
        # agent yet, so they count as targeted and not installed.
        leaving = NODES[15:]
        for node in leaving:
            agents[node].stop()
            await call(admin, "DELETE", f"/api/v1/namespaces/{namespace}/pods/{agents[node].pod}")
        for node in leaving:
            path = f"{ARTIFACT_API}/namespaces/{namespace}/artifactreports/{agents[node].pod}"
            await wait_for(partial(request, admin, "GET", path), lambda answer: answer[0] == 404,
                           what=f"report of {node} garbage-collected")  # fmt: skip
        pending = await wait_for(probe, counts(2, 20, 15, 15, "False"), what="15/20 after five pods went")
        assert "waiting for node16, node17, node18, node19, node20" in str(pending["conditions"])

        # Their nodes go too: nothing stale stays in the counts.
        for node in leaving:
            await call(admin, "DELETE", f"/api/v1/nodes/{node}")
        await wait_for(probe, counts(2, 15, 15, 15, "True"), what="15/15 after five nodes went")
