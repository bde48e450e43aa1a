"""What every artifact of a namespace hears about (its pods, its Falcos, the nodes) costs one list of the artifacts
per burst of events, and the agents of a namespace are read once for all its artifacts until something changes."""

from __future__ import annotations

from typing import Any, cast

import anyio
import pytest

from falco_operator.kube import Cache, Client, Controller, Request, Result, RuntimeMetrics
from falco_operator.kube.controller import EVERY_NAME, every_object_in
from falco_operator.kube.informer import Informer
from falco_operator.kube.manager import Manager, ManagerOptions
from falco_operator.kube.resources import NODES, PODS
from falco_operator.resources import FALCOS
from falco_operator.status.reconciler import INSTANCE_LABEL, agents_in

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]
NOBODY = cast(Client, cast(Any, object()))  # the informers are not run: the tests hand them their events


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Request] = []
        self.changed = anyio.Event()

    async def reconcile(self, request: Request) -> Result | None:
        self.seen.append(request)
        self.changed.set()
        return None

    async def until(self, count: int) -> None:
        with anyio.fail_after(5):
            while len(self.seen) < count:
                self.changed = anyio.Event()
                await self.changed.wait()


def pod(index: int, node: str = "node1", falco: str = "falco") -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": f"falco-{index}", "resourceVersion": str(index),
                         "labels": {INSTANCE_LABEL: falco}}, "spec": {"nodeName": node}}  # fmt: skip


async def test_a_burst_of_events_for_a_whole_namespace_lists_its_objects_once() -> None:
    recorder = Recorder()
    controller = Controller("status", recorder, metrics=RuntimeMetrics(), workers=2)
    listed: list[str] = []

    def artifacts(namespace: str) -> list[Request]:
        listed.append(namespace)
        return [Request(namespace, f"r{index}") for index in range(3)]

    controller.fan_out = artifacts
    pods = Informer(NOBODY, PODS)
    controller.watches(pods, lambda obj: [every_object_in(obj["metadata"]["namespace"])], delay=0.05)
    async with anyio.create_task_group() as group:
        await group.start(controller.run)
        for index in range(100):
            pods._notify_add(pod(index))
        await recorder.until(3)
        pods._notify_delete(pod(7))
        await recorder.until(6)
        await anyio.sleep(0.1)
        group.cancel_scope.cancel()
    assert listed == ["ns", "ns"]  # 100 events, then one more: two lists
    assert sorted(str(request) for request in recorder.seen) == ["ns/r0", "ns/r0", "ns/r1", "ns/r1", "ns/r2", "ns/r2"]
    assert all(request.name != EVERY_NAME for request in recorder.seen)


async def test_the_agents_of_a_namespace_are_read_again_only_after_a_change() -> None:
    cache = Cache(Manager(NOBODY, ManagerOptions(), RuntimeMetrics()))
    [pods], [nodes], [falcos] = cache.watch(PODS), cache.watch(NODES), cache.watch(FALCOS)
    nodes.store.upsert({"metadata": {"name": "node1", "labels": {"zone": "a"}}})
    falcos.store.upsert({"metadata": {"namespace": "ns", "name": "falco", "labels": {"tier": "web"}}})
    pods.store.upsert(pod(1))
    first = agents_in(cache, "ns")
    assert [agent.pod for agent in first] == ["falco-1"]
    assert agents_in(cache, "ns") is first  # nothing changed: the same answer, not read again
    pods.store.upsert(pod(2))
    assert [agent.pod for agent in agents_in(cache, "ns")] == ["falco-1", "falco-2"]
    falcos.store.upsert({"metadata": {"namespace": "ns", "name": "falco", "labels": {"tier": "db"}}})
    assert {agent.falco_labels["tier"] for agent in agents_in(cache, "ns")} == {"db"}
    nodes.store.delete({"metadata": {"name": "node1"}})
    assert agents_in(cache, "ns") == ()
