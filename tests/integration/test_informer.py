"""Informers against the real API server: order of events, server-side selectors, metadata-only lists."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio
import pytest

from e2e.controlplane import ControlPlane
from e2e.kube import call
from e2e.tcpproxy import SwitchableProxy
from e2e.wait import wait_for
from falco_operator.kube import Client, EventHandler, Informer, RuntimeMetrics
from falco_operator.kube.errors import Unreachable
from falco_operator.kube.resources import CONFIG_MAPS
from falco_operator.kube.transport import DirectTransport

pytestmark = pytest.mark.anyio
Json = dict[str, Any]


@asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[Informer]:
    async with anyio.create_task_group() as group:
        with anyio.fail_after(30):
            await group.start(informer.run)
        yield informer
        group.cancel_scope.cancel()


@pytest.fixture(params=[True, False], ids=["direct", "kr8s"])
async def client(control_plane: ControlPlane, request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    """A client over each transport: the project's HTTP client (pods) and kr8s (exec-plugin kubeconfigs)."""
    client = await Client.connect(
        kubeconfig=str(control_plane.kubeconfig), field_manager="tests", metrics=RuntimeMetrics(), direct=request.param
    )
    yield client
    await client.close()


def recorder(events: list[tuple[str, str, Any]]) -> EventHandler:
    """Record events of the test's own ConfigMaps (the controller-manager adds kube-root-ca.crt at any time)."""

    def record(kind: str, obj: Json) -> None:
        if obj["metadata"]["name"] != "kube-root-ca.crt":
            events.append(
                (kind, obj["metadata"]["name"], (obj.get("data") or {}).get("v") if kind != "delete" else None)
            )

    return EventHandler(
        on_add=lambda obj: record("add", obj),
        on_update=lambda old, new: record("update", new),
        on_delete=lambda obj: record("delete", obj),
    )


async def test_informer_sees_add_update_delete_in_order(api: kr8s.asyncio.Api, namespace: str, client: Client) -> None:
    """The first list asks for ``resourceVersion=0``, as client-go does: the API server may answer from its watch
    cache, which can lag a write made a moment before (it did on a loaded machine). The object created before the
    informer starts therefore arrives from that list or from the watch that follows it, always as one add, before
    anything that happens later."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    await call(api, "POST", path, body={"metadata": {"name": "before"}, "data": {"v": "0"}})
    events: list[tuple[str, str, Any]] = []
    informer = Informer(client, CONFIG_MAPS, namespace=namespace)
    informer.add_handler(recorder(events))
    async with running(informer):
        assert informer.has_synced
        await wait_for(lambda: _value(events), lambda seen: seen == [("add", "before", "0")], what="the first add")
        await call(api, "POST", path, body={"metadata": {"name": "cm"}, "data": {"v": "1"}})
        for value in ("2", "3"):
            await call(
                api, "PATCH", f"{path}/cm", body={"data": {"v": value}}, content_type="application/merge-patch+json"
            )
        await call(api, "DELETE", f"{path}/cm")
        expected = [("add", "cm", "1"), ("update", "cm", "2"), ("update", "cm", "3"), ("delete", "cm", None)]
        await wait_for(lambda: _value(events[1:]), lambda seen: seen == expected, what="events in order", timeout=20)
        assert informer.store.get(f"{namespace}/cm") is None
        cached = informer.store.get(f"{namespace}/before")
        assert cached is not None
        assert "managedFields" not in cached["metadata"], "the cache keeps no managed fields (memory)"


async def _value(events: list[tuple[str, str, Any]]) -> list[tuple[str, str, Any]]:
    return list(events)


async def test_selector_informers_receive_only_matching_objects(
    api: kr8s.asyncio.Api, namespace: str, client: Client
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    by_label = Informer(client, CONFIG_MAPS, namespace=namespace, label_selector="team=a")
    by_field = Informer(client, CONFIG_MAPS, namespace=namespace, field_selector="metadata.name=exact")
    label_events: list[tuple[str, str, Any]] = []
    field_events: list[tuple[str, str, Any]] = []
    by_label.add_handler(recorder(label_events))
    by_field.add_handler(recorder(field_events))
    async with running(by_label), running(by_field):
        await call(api, "POST", path, body={"metadata": {"name": "a1", "labels": {"team": "a"}}, "data": {"v": "1"}})
        await call(api, "POST", path, body={"metadata": {"name": "b1", "labels": {"team": "b"}}, "data": {"v": "1"}})
        await call(api, "POST", path, body={"metadata": {"name": "exact"}, "data": {"v": "1"}})
        for value in ("2", "3", "4"):
            await call(
                api, "PATCH", f"{path}/b1", body={"data": {"v": value}}, content_type="application/merge-patch+json"
            )
        await call(api, "PATCH", f"{path}/a1", body={"data": {"v": "9"}}, content_type="application/merge-patch+json")
        await wait_for(lambda: _value(label_events), lambda seen: ("update", "a1", "9") in seen, what="a1 update")
        await wait_for(lambda: _value(field_events), lambda seen: ("add", "exact", "1") in seen, what="exact add")
        # The informers filter nothing themselves: whatever reached them crossed the wire.
        assert label_events == [("add", "a1", "1"), ("update", "a1", "9")]
        assert by_label.events_received == 2
        assert field_events == [("add", "exact", "1")]
        assert by_field.events_received == 1
        assert by_label.store.keys() == [f"{namespace}/a1"]


async def test_metadata_only_informer_keeps_no_data(api: kr8s.asyncio.Api, namespace: str, client: Client) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    await call(api, "POST", path, body={"metadata": {"name": "listed", "labels": {"x": "1"}}, "data": {"v": "secret"}})
    informer = Informer(client, CONFIG_MAPS, namespace=namespace, metadata_only=True)
    async with running(informer):
        await call(api, "POST", path, body={"metadata": {"name": "watched"}, "data": {"v": "secret"}})
        await wait_for(lambda: _keys(informer), lambda keys: {f"{namespace}/listed", f"{namespace}/watched"} <= keys,
                       what="both objects")  # fmt: skip
        for obj in informer.store.objects():
            assert "data" not in obj
            assert obj["kind"] == "PartialObjectMetadata"
        listed = informer.store.get(f"{namespace}/listed")
        assert listed is not None
        assert listed["metadata"]["labels"] == {"x": "1"}


async def _keys(informer: Informer) -> set[str]:
    return set(informer.store.keys())


def _keep_v(obj: Json) -> Json:
    return {"metadata": obj["metadata"], "data": {"v": (obj.get("data") or {}).get("v")}}


async def test_transform_shapes_both_the_cache_and_what_handlers_see(
    api: kr8s.asyncio.Api, namespace: str, client: Client
) -> None:
    """A transform applies to listed and watched objects alike, and handlers receive the transformed object."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    await call(api, "POST", path, body={"metadata": {"name": "listed"}, "data": {"v": "1", "big": "x" * 1000}})
    seen: list[Json] = []

    def record(obj: Json) -> None:
        if obj["metadata"]["name"] != "kube-root-ca.crt":
            seen.append(obj)

    informer = Informer(client, CONFIG_MAPS, namespace=namespace, transform=_keep_v)
    informer.add_handler(EventHandler(on_add=record, on_update=lambda old, new: record(new), on_delete=record))
    async with running(informer):
        await call(api, "POST", path, body={"metadata": {"name": "watched"}, "data": {"v": "1", "big": "y" * 1000}})
        await call(api, "PATCH", f"{path}/watched", body={"data": {"v": "2"}},
                   content_type="application/merge-patch+json")  # fmt: skip
        await call(api, "DELETE", f"{path}/watched")
        await wait_for(lambda: _objects(seen), lambda got: len(got) == 4, what="add, add, update, delete")
        assert [(obj["metadata"]["name"], obj["data"]) for obj in seen] == [
            ("listed", {"v": "1"}), ("watched", {"v": "1"}), ("watched", {"v": "2"}), ("watched", {"v": "2"}),
        ]  # fmt: skip
        assert all("managedFields" not in obj["metadata"] for obj in seen)
        cached = informer.store.get(f"{namespace}/listed")
        assert cached is not None
        assert cached["data"] == {"v": "1"}


async def _objects(items: list[Json]) -> list[Json]:
    return list(items)


async def test_a_watch_that_stops_answering_ends_at_its_inactivity_timeout_and_resumes(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path, client: Client
) -> None:
    """The watch's connection goes silent (a frozen proxy: no bytes, no close): the read timeout ends it after the
    informer's inactivity timeout, and a watch on a new connection delivers what changed meanwhile."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    await call(api, "POST", path, body={"metadata": {"name": "quiet"}, "data": {"v": "1"}})
    with SwitchableProxy("127.0.0.1", control_plane.state.apiserver_port) as proxy:
        kubeconfig = proxy.kubeconfig(control_plane.kubeconfig, tmp_path / "proxied.kubeconfig")
        proxied = await client.connect(kubeconfig=str(kubeconfig), field_manager="tests",
                                       direct=isinstance(client._transport, DirectTransport))  # fmt: skip
        informer = Informer(proxied, CONFIG_MAPS, namespace=namespace, inactivity_timeout=2.0)
        failures: list[BaseException] = []
        informer.add_error_handler(failures.append)
        try:
            async with running(informer):
                await anyio.sleep(0.5)  # the watch is open
                proxy.freeze_open()
                frozen_at = time.monotonic()
                await call(api, "PATCH", f"{path}/quiet", body={"data": {"v": "2"}},
                           content_type="application/merge-patch+json")  # fmt: skip
                await wait_for(lambda: _data(informer, f"{namespace}/quiet"), lambda v: v == "2",
                               what="the change made while the watch was frozen", timeout=20)  # fmt: skip
                resumed_after = time.monotonic() - frozen_at
        finally:
            await proxied.close()
    assert failures, "the frozen watch failed"
    assert isinstance(failures[0], Unreachable), failures
    assert "TimedOut" in str(failures[0]), failures
    assert 2.0 <= resumed_after < 10, f"resumed {resumed_after:.1f}s after the freeze"


async def _data(informer: Informer, key: str) -> str | None:
    cached = informer.store.get(key)
    return None if cached is None else (cached.get("data") or {}).get("v")
