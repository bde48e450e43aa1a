"""A periodic resync reconciles a controller's own objects, not everything a secondary watch maps them to: the
status controllers watch the Falcos, and each Falco's resync used to reconcile every artifact of its namespace."""

from __future__ import annotations

from typing import Any, cast

from falco_operator.kube import Client, Controller, Request, Result, RuntimeMetrics
from falco_operator.kube.controller import LABELS_CHANGED
from falco_operator.kube.informer import Informer
from falco_operator.resources import FALCOS, RULESFILES


class NoReconciles:
    async def reconcile(self, request: Request) -> Result | None:
        raise AssertionError("not run here")


def falco(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "labels": labels, "resourceVersion": "1"}}


def queued(controller: Controller) -> set[Request]:
    return set(controller.queue._queue)


def test_a_resync_reconciles_the_primary_objects_and_a_secondary_watch_only_on_a_change() -> None:
    no_client = cast(Client, None)  # the informers are not run: their handlers are called as a resync calls them
    falcos, rulesfiles = Informer(no_client, FALCOS), Informer(no_client, RULESFILES)
    instances = Controller("falco", NoReconciles(), metrics=RuntimeMetrics())
    instances.for_(falcos, LABELS_CHANGED)
    statuses = Controller("rulesfile-status", NoReconciles(), metrics=RuntimeMetrics())
    artifacts = [Request("ns", f"r{index}") for index in range(3)]
    statuses.watches(falcos, lambda obj: artifacts, LABELS_CHANGED)
    statuses.for_(rulesfiles)

    one = falco("one", {"tier": "web"})
    falcos._notify_update(one, one)  # what the periodic resync hands each handler
    assert queued(instances) == {Request("ns", "one")}
    assert queued(statuses) == set()

    falcos._notify_update(one, falco("one", {"tier": "db"}))  # a label change still maps to the artifacts
    assert queued(statuses) == set(artifacts)

    rulesfile = {"metadata": {"namespace": "ns", "name": "r9", "resourceVersion": "4"}}
    rulesfiles._notify_update(rulesfile, rulesfile)
    assert Request("ns", "r9") in queued(statuses)
