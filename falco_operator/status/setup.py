"""Wire the artifact status controllers into a manager: what changes an artifact's status, and how fast."""

from __future__ import annotations

from typing import Any

from ..instance.options import FIELD_MANAGER
from ..kube import (
    GENERATION_CHANGED,
    LABELS_CHANGED,
    Cache,
    Client,
    Controller,
    EventRecorder,
    Manager,
    Predicate,
    Request,
    any_of,
)
from ..kube.controller import EVERYWHERE, every_object_in
from ..kube.resources import NODES, PODS
from ..resources import ARTIFACTREPORTS, CONFIGS, FALCOS, PLUGINS, RULESFILES
from ..rollout.driver import ROLLOUT_ANNOTATION_CHANGED, rollout_counter
from .metrics import ArtifactMetrics
from .reconciler import FALCO_PODS, ArtifactStatusReconciler, node_metadata, pod_placement

Json = dict[str, Any]
REPORT_BATCHING = 0.2
"""Seconds during which reports and pod moves about one artifact are gathered into one reconcile; when the status
is written is the reconciler's decision (``coalescing``). The report of the last agent the status waits for
reconciles at once: the change may have settled, and ``Programmed`` waits for no batch."""

POD_PLACEMENT_CHANGED = Predicate(
    update=lambda old, new: (
        (old.get("spec") or {}).get("nodeName") != (new.get("spec") or {}).get("nodeName")
        or (old.get("metadata") or {}).get("deletionTimestamp") != (new.get("metadata") or {}).get("deletionTimestamp")
    )
)


def setup_status_controllers(
    manager: Manager,
    client: Client,
    *,
    namespaces: tuple[str, ...] = (),
    workers: int = 2,
    identity: str = FIELD_MANAGER,
) -> list[ArtifactStatusReconciler]:
    cache = Cache(manager, namespaces)
    events = EventRecorder(client, FIELD_MANAGER, identity)
    reports = cache.watch(ARTIFACTREPORTS)
    pods = cache.watch(PODS, label_selector=FALCO_PODS, transform=pod_placement)
    falcos = cache.watch(FALCOS)
    nodes = cache.watch(NODES, transform=node_metadata)
    reconcilers = []
    kinds = (RULESFILES, PLUGINS, CONFIGS)
    rollouts = rollout_counter(manager.metrics.registry)
    for resource in kinds:
        reconciler = ArtifactStatusReconciler(client, cache, resource, events, rollouts=rollouts)
        controller = Controller(f"{resource.kind.lower()}-status", reconciler, metrics=manager.metrics,
                                workers=workers)  # fmt: skip
        for informer in cache.watch(resource):
            controller.for_(informer, any_of(GENERATION_CHANGED, ROLLOUT_ANNOTATION_CHANGED))

        def artifacts_in(namespace: str, resource: Any = resource) -> list[Request]:
            found = cache.objects(resource) if namespace == EVERYWHERE else cache.in_namespace(resource, namespace)
            return [Request.for_object(item) for item in found]

        controller.fan_out = artifacts_in

        # A pod, a Falco or a node concerns every artifact of its namespace (or of all): one request stands for
        # them all until the queue hands it out, so a burst of pod events lists the artifacts once.
        def in_namespace(obj: Json) -> list[Request]:
            return [every_object_in((obj.get("metadata") or {}).get("namespace") or "")]

        def everywhere(_: Json) -> list[Request]:
            return [every_object_in(EVERYWHERE)]

        def reported(obj: Json, kind: str = resource.kind) -> list[Request]:
            namespace = (obj.get("metadata") or {}).get("namespace") or ""
            return [Request(namespace, str(item["name"])) for item in
                    ((obj.get("status") or {}).get("artifacts") or []) if item.get("kind") == kind]  # fmt: skip

        def last_awaited(
            obj: Json, kind: str = resource.kind, reconciler: ArtifactStatusReconciler = reconciler
        ) -> list[Request]:
            pod = str((obj.get("metadata") or {}).get("name") or "")
            return [request for request in reported(obj, kind) if reconciler.coalescer.reported(request, pod)]

        for informer in reports:
            controller.watches(informer, reported, delay=REPORT_BATCHING)
            controller.watches(informer, last_awaited)
        for informer in pods:
            controller.watches(informer, in_namespace, POD_PLACEMENT_CHANGED, delay=REPORT_BATCHING)
        for informer in falcos:
            controller.watches(informer, in_namespace, LABELS_CHANGED)
        for informer in nodes:
            controller.watches(informer, everywhere, LABELS_CHANGED)  # and every added or deleted node
        manager.add_controller(controller)
        reconcilers.append(reconciler)
    ArtifactMetrics(lambda: [obj for kind in kinds for obj in cache.objects(kind)],
                    lambda: cache.objects(ARTIFACTREPORTS)).register(manager.metrics.registry)  # fmt: skip
    return reconcilers
