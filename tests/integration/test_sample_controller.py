"""The runtime core end to end: a sample controller (ConfigMap -> Secret copier) on the real API server."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import anyio
import httpx
import kr8s.asyncio
import pytest

from e2e.audit import AuditMark, describe
from e2e.controlplane import ControlPlane
from e2e.kube import call, request
from e2e.metrics import label_names, names, scrape, value
from e2e.wait import wait_for
from falco_operator.kube import Client, Manager, ManagerOptions, Request, RuntimeMetrics, WorkQueue
from tests.integration.sample_copier import FIELD_MANAGER, Copier, build

pytestmark = pytest.mark.anyio
CONTROLLER = "configmap-copier"

# DESIGN §3: every runtime metric, with the labels dashboards select on.
EXPECTED_METRICS = {
    "controller_runtime_reconcile_total": {"controller", "result"},
    "controller_runtime_reconcile_errors_total": {"controller"},
    "controller_runtime_reconcile_time_seconds_bucket": {"controller", "le"},
    "controller_runtime_max_concurrent_reconciles": {"controller"},
    "controller_runtime_active_workers": {"controller"},
    "workqueue_depth": {"name", "controller"},
    "workqueue_adds_total": {"name", "controller"},
    "workqueue_queue_duration_seconds_bucket": {"name", "controller", "le"},
    "workqueue_work_duration_seconds_bucket": {"name", "controller", "le"},
    "workqueue_retries_total": {"name", "controller"},
    "workqueue_unfinished_work_seconds": {"name", "controller"},
    "workqueue_longest_running_processor_seconds": {"name", "controller"},
    "rest_client_requests_total": {"code", "method", "host"},
    "leader_election_master_status": {"name"},
}


@asynccontextmanager
async def copier_running(
    plane: ControlPlane, namespace: str, *, resync: float | None = None, leader_election: bool = False
) -> AsyncIterator[tuple[Manager, Copier, Client]]:
    metrics = RuntimeMetrics()
    client = await Client.connect(kubeconfig=str(plane.kubeconfig), field_manager=FIELD_MANAGER, metrics=metrics)
    options = ManagerOptions(
        metrics_address="127.0.0.1:0", probe_address="127.0.0.1:0", leader_election=leader_election,
        leader_election_namespace=namespace, leader_election_id="sample-copier", identity="in-process",
    )  # fmt: skip
    manager, copier = build(client, metrics, options, namespace, resync)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(manager.run)
            await wait_for(_ready(manager), bool, what="manager ready", timeout=30)
            yield manager, copier, client
            manager.stop()
    finally:
        await client.close()


def _ready(manager: Manager) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return manager.synced and (manager.elector is None or manager.elector.leading)

    return probe


def _count(copier: Copier, name: str) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return sum(1 for r in copier.reconciled if r.name == name)

    return probe


async def test_sample_controller_copies_requeues_and_stops_on_terminal_errors(
    control_plane: ControlPlane, api: kr8s.asyncio.Api, namespace: str
) -> None:
    configmaps = f"/api/v1/namespaces/{namespace}/configmaps"
    secrets = f"/api/v1/namespaces/{namespace}/secrets"
    labels = {"copy": "yes"}
    async with copier_running(control_plane, namespace, leader_election=True) as (manager, copier, _):
        base = f"http://127.0.0.1:{manager.ports['metrics']}"
        await call(api, "POST", configmaps, body={"metadata": {"name": "a", "labels": labels}, "data": {"k": "v1"}})
        await call(api, "POST", configmaps, body={"metadata": {"name": "unlabelled"}, "data": {"k": "v"}})

        async def secret(name: str) -> dict[str, str]:
            status, body = await request(api, "GET", f"{secrets}/{name}")
            return dict(body.get("data") or {}) if status == 200 else {}

        encoded = base64.b64encode(b"v1").decode()
        await wait_for(lambda: secret("a"), lambda data: data == {"k": encoded}, what="secret a copied")
        owner = (await call(api, "GET", f"{secrets}/a"))["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("ConfigMap", "a", True)

        # for_: a change of the ConfigMap is copied again.
        await call(
            api, "PATCH", f"{configmaps}/a", body={"data": {"k": "v2"}}, content_type="application/merge-patch+json"
        )
        encoded = base64.b64encode(b"v2").decode()
        await wait_for(lambda: secret("a"), lambda data: data == {"k": encoded}, what="secret a updated")
        # owns: deleting the owned Secret brings it back.
        await call(api, "DELETE", f"{secrets}/a")
        await wait_for(lambda: secret("a"), lambda data: data == {"k": encoded}, what="secret a recreated")
        assert await secret("unlabelled") == {}

        # requeue_after: reconciled again and again without any change.
        ticking = {"name": "ticking", "labels": labels, "annotations": {"requeue-after": "0.3"}}
        await call(api, "POST", configmaps, body={"metadata": ticking, "data": {}})
        await wait_for(_count(copier, "ticking"), lambda n: n >= 4, what="requeue_after reconciles", timeout=10)

        # Terminal error: an event, counted, and no retry.
        await call(
            api, "POST", configmaps, body={"metadata": {"name": "bad", "labels": labels}, "data": {"invalid": "x"}}
        )
        await wait_for(_count(copier, "bad"), lambda n: n >= 1, what="bad reconciled")
        await anyio.sleep(2)
        assert await _count(copier, "bad")() == 1
        events = await call(api, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
        reasons = [(e["reason"], e["regarding"]["name"], e["type"]) for e in events["items"]]
        assert ("InvalidData", "bad", "Warning") in reasons
        assert ("Copied", "a", "Normal") in reasons

        samples = await scrape(f"{base}/metrics")
        for name, expected_labels in EXPECTED_METRICS.items():
            assert name in names(samples), f"{name} not exposed"
            assert expected_labels <= label_names(samples, name), (name, label_names(samples, name))
        assert value(samples, "controller_runtime_reconcile_total", controller=CONTROLLER, result="success") >= 3
        assert value(samples, "controller_runtime_reconcile_total", controller=CONTROLLER, result="requeue_after") >= 3
        assert value(samples, "controller_runtime_reconcile_total", controller=CONTROLLER, result="error") == 1
        assert value(samples, "controller_runtime_reconcile_errors_total", controller=CONTROLLER) == 1
        assert value(samples, "controller_runtime_terminal_reconcile_errors_total", controller=CONTROLLER) == 1
        assert value(samples, "controller_runtime_max_concurrent_reconciles", controller=CONTROLLER) == 2
        assert value(samples, "workqueue_adds_total", name=CONTROLLER) >= 5
        assert value(samples, "controller_runtime_reconcile_time_seconds_count", controller=CONTROLLER) >= 5
        assert value(samples, "rest_client_requests_total", method="PATCH", code="201") >= 2  # apply that creates
        assert value(samples, "rest_client_requests_total", method="PATCH", code="200") >= 1  # apply that updates
        assert value(samples, "leader_election_master_status", name="sample-copier") == 1

        async with httpx.AsyncClient() as http:
            probes = f"http://127.0.0.1:{manager.ports['probes']}"
            assert (await http.get(f"{probes}/healthz")).status_code == 200
            assert (await http.get(f"{probes}/readyz")).text == "ok"
            assert (await http.get(f"{probes}/nope")).status_code == 404


async def test_steady_state_with_100_objects_makes_no_writes(
    control_plane: ControlPlane, api: kr8s.asyncio.Api, namespace: str
) -> None:
    configmaps = f"/api/v1/namespaces/{namespace}/configmaps"
    async with anyio.create_task_group() as group:
        for index in range(100):
            body = {"metadata": {"name": f"cm-{index:03d}", "labels": {"copy": "yes"}}, "data": {"n": str(index)}}
            group.start_soon(partial(call, api, "POST", configmaps, body=body))
    async with copier_running(control_plane, namespace, resync=10.0) as (manager, copier, client):

        async def copies() -> int:
            listing = await call(api, "GET", f"/api/v1/namespaces/{namespace}/secrets")
            return sum(1 for s in listing["items"] if s["metadata"]["name"].startswith("cm-"))

        await wait_for(copies, lambda n: n == 100, what="100 copies", timeout=60)
        controller = manager.controllers[0]
        await wait_for(_idle(controller.queue), bool, what="queue idle", timeout=30)
        await anyio.sleep(2)  # let the informers catch up with the last writes
        writes_before = _client_writes(client)
        reconciles_before = len(copier.reconciled)
        mark = AuditMark.now(control_plane.state.audit_log)

        await anyio.sleep(60)

        writes = mark.writes_since(namespace=namespace)
        assert writes == [], f"writes in steady state: {describe(writes)}"
        assert _client_writes(client) == writes_before
        # Resyncs ran every 10 s and reconciled every object, finding nothing to write.
        assert len(copier.reconciled) - reconciles_before >= 400
        assert copier.applier.skips >= 400


def _idle(queue: WorkQueue[Request]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return len(queue) == 0 and queue.longest_running_processor_seconds() == 0

    return probe


def _client_writes(client: Client) -> float:
    assert client.metrics is not None
    return sum(
        sample.value
        for metric in client.metrics.rest_requests.collect()
        for sample in metric.samples
        if sample.name == "rest_client_requests_total" and sample.labels["method"] != "GET"
    )
