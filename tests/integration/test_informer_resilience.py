"""Informers survive the API server: a crash and restart, and a resourceVersion that expired (410 Gone).

These tests kill the API server, so they run on a control plane of their own (no nodes, started in seconds),
leaving the session's shared control plane undisturbed.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest

from e2e.controlplane import ControlPlane, start_cluster
from e2e.nodesim import NodeSimulator, NodeSpec, client_from_kubeconfig
from e2e.wait import wait_for
from falco_operator.kube import Backoff, Client, Informer, RuntimeMetrics
from falco_operator.kube.resources import CONFIG_MAPS, NAMESPACES, NODES

pytestmark = pytest.mark.anyio
NAMESPACE = "resilience"


@pytest.fixture(scope="module")
def fragile_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    # Without the watch cache, watches are served by etcd, so compacting etcd expires old resourceVersions.
    plane = start_cluster(tmp_path_factory.mktemp("fragile"), nodes=(), apiserver_args=("--watch-cache=false",))
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(params=[True, False], ids=["direct", "kr8s"])
async def client(fragile_plane: ControlPlane, request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    """A client over each transport: the project's HTTP client (pods) and kr8s (exec-plugin kubeconfigs)."""
    client = await Client.connect(
        kubeconfig=str(fragile_plane.kubeconfig), field_manager="tests", metrics=RuntimeMetrics(), direct=request.param
    )
    if await client.get_or_none(NAMESPACES, NAMESPACE) is None:
        await client.create(NAMESPACES, {"metadata": {"name": NAMESPACE}})
    yield client
    # The tests name their ConfigMaps: the run over the other transport starts from an empty namespace.
    for config_map in (await client.list(CONFIG_MAPS, NAMESPACE))[0]:
        await client.delete(CONFIG_MAPS, config_map["metadata"]["name"], NAMESPACE)
    await client.close()


async def restart_apiserver(plane: ControlPlane, downtime: float) -> None:
    plane.stop_component("kube-apiserver", crash=True)
    await anyio.sleep(downtime)
    # Spawned from the event loop's thread: children die with the thread that started them (PDEATHSIG).
    plane.start_component("kube-apiserver")
    await anyio.to_thread.run_sync(lambda: plane.wait_ready(timeout=60))


async def compact_etcd(plane: ControlPlane) -> int:
    """Compact etcd's history up to its current revision (through etcd's JSON gateway); returns it."""
    base = f"http://127.0.0.1:{plane.state.etcd_port}/v3"
    async with httpx.AsyncClient(timeout=10) as etcd:
        status = (await etcd.post(f"{base}/kv/range", json={"key": base64.b64encode(b"/").decode()})).json()
        revision = int(status["header"]["revision"])
        response = await etcd.post(f"{base}/kv/compaction", json={"revision": revision, "physical": True})
        response.raise_for_status()
    return revision


async def _configmap(informer: Informer, name: str) -> dict[str, str]:
    obj = informer.store.get(f"{NAMESPACE}/{name}")
    return dict((obj or {}).get("data") or {})


async def test_informer_resumes_after_apiserver_crash_without_losing_an_update(
    fragile_plane: ControlPlane, client: Client
) -> None:
    await client.create(CONFIG_MAPS, {"metadata": {"name": "crash", "namespace": NAMESPACE}, "data": {"v": "1"}})
    informer = Informer(client, CONFIG_MAPS, namespace=NAMESPACE, backoff=Backoff(0.8, 30.0))
    async with anyio.create_task_group() as group:
        await group.start(informer.run)
        assert (await _configmap(informer, "crash")) == {"v": "1"}
        requests_before = informer.requests
        await restart_apiserver(fragile_plane, 3.0)
        # Written as soon as the API server is back, while the informer is still backing off.
        await client.merge_patch(CONFIG_MAPS, "crash", {"data": {"v": "2"}}, NAMESPACE)
        await wait_for(lambda: _configmap(informer, "crash"), lambda d: d == {"v": "2"}, what="update seen", timeout=60)
        await client.merge_patch(CONFIG_MAPS, "crash", {"data": {"v": "3"}}, NAMESPACE)
        await wait_for(
            lambda: _configmap(informer, "crash"), lambda d: d == {"v": "3"}, what="watch resumed", timeout=30
        )
        # Backoff, not a busy loop: a handful of attempts for a few seconds of downtime.
        assert informer.requests - requests_before < 15, informer.requests - requests_before
        group.cancel_scope.cancel()


async def test_watches_resume_within_seconds_after_a_long_outage(fragile_plane: ControlPlane, client: Client) -> None:
    """Twenty seconds without an API server: with the default backoff an informer retries at least every 5 s,
    so an edit made as soon as the server is back is seen within seconds (not after a 30 s backoff)."""
    await client.create(CONFIG_MAPS, {"metadata": {"name": "outage", "namespace": NAMESPACE}, "data": {"v": "1"}})
    informer = Informer(client, CONFIG_MAPS, namespace=NAMESPACE)
    async with anyio.create_task_group() as group:
        await group.start(informer.run)
        await restart_apiserver(fragile_plane, 20.0)
        await client.merge_patch(CONFIG_MAPS, "outage", {"data": {"v": "2"}}, NAMESPACE)
        back = time.monotonic()
        await wait_for(lambda: _configmap(informer, "outage"), lambda d: d == {"v": "2"}, what="edit seen", timeout=30)
        waited = time.monotonic() - back
        assert waited < 12, f"the edit was seen {waited:.1f} s after the API server returned"
        group.cancel_scope.cancel()


async def test_informer_relists_when_its_resource_version_expired(fragile_plane: ControlPlane, client: Client) -> None:
    await client.create(CONFIG_MAPS, {"metadata": {"name": "gone", "namespace": NAMESPACE}, "data": {"v": "1"}})
    deleted_while_away = {"metadata": {"name": "deleted-while-away", "namespace": NAMESPACE}}
    await client.create(CONFIG_MAPS, deleted_while_away)
    informer = Informer(client, CONFIG_MAPS, namespace=NAMESPACE, backoff=Backoff(15.0, 30.0, jitter=0.0))
    async with anyio.create_task_group() as group:
        await group.start(informer.run)
        await restart_apiserver(fragile_plane, 0.5)
        # While the informer waits out its 15 s backoff (ample for a restart on a loaded machine),
        # history moves on and is compacted away.
        await client.merge_patch(CONFIG_MAPS, "gone", {"data": {"v": "2"}}, NAMESPACE)
        await client.delete(CONFIG_MAPS, "deleted-while-away", NAMESPACE)
        await client.create(CONFIG_MAPS, {"metadata": {"name": "created-while-away", "namespace": NAMESPACE}})
        await compact_etcd(fragile_plane)
        await wait_for(lambda: _relists(informer), lambda n: n >= 1, what="a relist after 410 Gone", timeout=60)
        await wait_for(
            lambda: _keys(informer),
            lambda keys: (
                {f"{NAMESPACE}/gone", f"{NAMESPACE}/created-while-away"} <= keys
                and f"{NAMESPACE}/deleted-while-away" not in keys
            ),
            what="store converged",
            timeout=30,
        )
        assert (await _configmap(informer, "gone")) == {"v": "2"}
        group.cancel_scope.cancel()


async def _relists(informer: Informer) -> int:
    return informer.relists


async def _keys(informer: Informer) -> set[str]:
    return set(informer.store.keys())


async def test_the_node_simulator_reports_ready_again_after_a_node_was_marked_not_ready(
    fragile_plane: ControlPlane, client: Client
) -> None:
    """What the node lifecycle controller does after an API server outage (Ready=Unknown) is undone by the next
    heartbeat, as a kubelet would, so nodes do not stay NotReady for good."""
    async with client_from_kubeconfig(fragile_plane.kubeconfig) as http, anyio.create_task_group() as group:
        group.start_soon(NodeSimulator(http, [NodeSpec("simnode", {})]).run)
        await wait_for(lambda: _ready(client, "simnode"), lambda ready: ready == "True", what="node registered")
        unknown = {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                   "message": "Kubelet stopped posting node status."}  # fmt: skip
        patched = await client.request("PATCH", "/api/v1/nodes/simnode/status",
                                       body={"status": {"conditions": [unknown]}},
                                       content_type="application/strategic-merge-patch+json")  # fmt: skip
        # What the patch left (a read after it could already see the simulator's next heartbeat).
        assert _ready_of(patched) == "Unknown"
        await wait_for(lambda: _ready(client, "simnode"), lambda ready: ready == "True", what="Ready again",
                       timeout=25)  # fmt: skip
        group.cancel_scope.cancel()


async def _ready(client: Client, node: str) -> str:
    return _ready_of(await client.get_or_none(NODES, node))


def _ready_of(obj: dict[str, Any] | None) -> str:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((str(c["status"]) for c in conditions if c["type"] == "Ready"), "")
