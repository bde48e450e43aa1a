"""Wire the Component controller into a manager: informers (shared with the Falco controller's), event sources,
workers."""

from __future__ import annotations

from typing import Any

from ..instance.options import FIELD_MANAGER
from ..instance.setup import DELETION_OR_FINALIZERS_CHANGED, MANAGED
from ..kube import (
    GENERATION_CHANGED,
    LABELS_CHANGED,
    Cache,
    Client,
    Controller,
    EventRecorder,
    Manager,
    Request,
    any_of,
    controller_owner,
)
from ..kube.condensed import condense_workload
from ..kube.resources import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    DEPLOYMENTS,
    PERSISTENT_VOLUME_CLAIMS,
    SERVICE_ACCOUNTS,
    SERVICES,
)
from ..resources import COMPONENTS
from .builders import OWNER_NAME_LABEL, OWNER_NAMESPACE_LABEL, ComponentOptions
from .reconciler import ComponentReconciler

Json = dict[str, Any]
CONTROLLER_NAME = "component"


def _cluster_owner(obj: Json) -> list[Request]:
    labels = obj["metadata"].get("labels") or {}
    namespace, name = labels.get(OWNER_NAMESPACE_LABEL), labels.get(OWNER_NAME_LABEL)
    return [Request(namespace, name)] if namespace and name else []


def setup_component_controller(
    manager: Manager,
    client: Client,
    options: ComponentOptions,
    *,
    namespaces: tuple[str, ...] = (),
    workers: int = 2,
    resync_period: float | None = 600.0,
    identity: str = "falco-operator",
) -> ComponentReconciler:
    cache = Cache(manager, namespaces)
    events = EventRecorder(client, FIELD_MANAGER, identity)
    reconciler = ComponentReconciler(client, cache, options, events)
    controller = Controller(CONTROLLER_NAME, reconciler, metrics=manager.metrics, workers=workers)
    for informer in cache.watch(COMPONENTS, resync_period=resync_period):
        controller.for_(informer, any_of(GENERATION_CHANGED, LABELS_CHANGED, DELETION_OR_FINALIZERS_CHANGED))
    owner = controller_owner("instance.falcosecurity.dev", "Component")
    for resource in (SERVICE_ACCOUNTS, SERVICES, PERSISTENT_VOLUME_CLAIMS):
        for informer in cache.watch(resource, label_selector=MANAGED):
            controller.watches(informer, owner)
    # The same informer as the Falco controller's (same transform): pod templates kept as digests.
    for informer in cache.watch(DEPLOYMENTS, label_selector=MANAGED, transform=condense_workload):
        controller.watches(informer, owner)
    for resource in (CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS):
        for informer in cache.watch(resource, label_selector=MANAGED):
            controller.watches(informer, _cluster_owner)
    manager.add_controller(controller)
    return reconciler
