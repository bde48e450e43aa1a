"""Wire the Falco controller into a manager: informers, event sources, workers."""

from __future__ import annotations

from typing import Any

from ..api import Falco
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
    controller_owner,
)
from ..kube.condensed import condense_workload
from ..kube.resources import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    CONFIG_MAPS,
    CUSTOM_RESOURCE_DEFINITIONS,
    DAEMON_SETS,
    DEPLOYMENTS,
    ROLE_BINDINGS,
    ROLES,
    SERVICE_ACCOUNTS,
    SERVICES,
)
from ..resources import COMPONENTS, CONFIGS, FALCOS, PLUGINS, RULESFILES
from ..wiring.setup import AVAILABILITY_CHANGED, falcos_naming
from .naming import MANAGED_BY, OPERATOR, OWNER_NAME_LABEL, OWNER_NAMESPACE_LABEL
from .options import FIELD_MANAGER, BuildOptions
from .reconciler import FalcoReconciler
from .servicemonitor import SERVICE_MONITOR_CRD, crd_serves_service_monitors, wants_service_monitor

Json = dict[str, Any]
CONTROLLER_NAME = "falco"
MANAGED = f"{MANAGED_BY}={OPERATOR}"

DELETION_OR_FINALIZERS_CHANGED = Predicate(
    update=lambda old, new: (
        old["metadata"].get("deletionTimestamp") != new["metadata"].get("deletionTimestamp")
        or old["metadata"].get("finalizers") != new["metadata"].get("finalizers")
    )
)


def _summary_part(obj: Json) -> tuple[object, ...]:
    status = obj.get("status") or {}
    programmed = [c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Programmed"]
    return (
        programmed[0] if programmed else None,
        (status.get("nodes") or {}).get("failed"),
        status.get("observedGeneration"),
    )


SERVED_CHANGED = Predicate(update=lambda old, new: crd_serves_service_monitors(old) != crd_serves_service_monitors(new))
"""The ServiceMonitor CRD started or stopped serving (an established CRD's other changes matter not)."""

SUMMARY_CHANGED = Predicate(update=lambda old, new: _summary_part(old) != _summary_part(new))
"""What the Falco's artifact summary counts changed on an artifact."""


def _cluster_owner(obj: Json) -> list[Request]:
    labels = obj["metadata"].get("labels") or {}
    namespace, name = labels.get(OWNER_NAMESPACE_LABEL), labels.get(OWNER_NAME_LABEL)
    return [Request(namespace, name)] if namespace and name else []


def setup_falco_controller(
    manager: Manager,
    client: Client,
    options: BuildOptions,
    *,
    namespaces: tuple[str, ...] = (),
    workers: int = 4,
    resync_period: float | None = 600.0,
    identity: str = OPERATOR,
) -> FalcoReconciler:
    cache = Cache(manager, namespaces)
    events = EventRecorder(client, FIELD_MANAGER, identity)
    # One CRD, by name: the operator may read only that one (RBAC resourceNames allow a metadata.name selector).
    monitor_crd = manager.informer(CUSTOM_RESOURCE_DEFINITIONS, field_selector=f"metadata.name={SERVICE_MONITOR_CRD}")

    def service_monitors_served() -> bool:
        return crd_serves_service_monitors(monitor_crd.store.get_by_name(SERVICE_MONITOR_CRD, None))

    reconciler = FalcoReconciler(client, cache, options, events, service_monitors_served=service_monitors_served)
    controller = Controller(CONTROLLER_NAME, reconciler, metrics=manager.metrics, workers=workers)

    falco_predicate = any_of(GENERATION_CHANGED, LABELS_CHANGED, DELETION_OR_FINALIZERS_CHANGED)
    for informer in cache.watch(FALCOS, resync_period=resync_period):
        controller.for_(informer, falco_predicate)
    owner = controller_owner("instance.falcosecurity.dev", "Falco")
    for resource in (SERVICE_ACCOUNTS, ROLES, ROLE_BINDINGS, CONFIG_MAPS, SERVICES):
        for informer in cache.watch(resource, label_selector=MANAGED):
            controller.watches(informer, owner)
    # Workloads cached without their pod templates (most of what the operator holds per Falco): the applier
    # compares digests, and reads a workload in full only when its digest says someone changed it.
    for resource in (DAEMON_SETS, DEPLOYMENTS):
        for informer in cache.watch(resource, label_selector=MANAGED, transform=condense_workload):
            controller.watches(informer, owner)
    for resource in (CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS):
        for informer in cache.watch(resource, label_selector=MANAGED):
            controller.watches(informer, _cluster_owner)

    def falcos_in_namespace(obj: Json) -> list[Request]:
        namespace = obj["metadata"].get("namespace") or ""
        return [Request.for_object(falco) for falco in cache.in_namespace(FALCOS, namespace)]

    def falcos_wanting_a_monitor(_: Json) -> list[Request]:
        wanting = []
        for raw in cache.objects(FALCOS):
            try:
                if wants_service_monitor(Falco.model_validate(raw)):
                    wanting.append(Request.for_object(raw))
            except ValueError:
                continue  # the reconcile of an unreadable Falco reports it
        return wanting

    controller.watches(monitor_crd, falcos_wanting_a_monitor, SERVED_CHANGED)

    # An artifact's references decide what the agents of every Falco in its namespace may read, and its status
    # counts in the Falco's artifact summary.
    for resource in (RULESFILES, PLUGINS, CONFIGS):
        for informer in cache.watch(resource):
            controller.watches(informer, falcos_in_namespace, any_of(GENERATION_CHANGED, SUMMARY_CHANGED))
    # A Component that appears, goes, changes or becomes (un)available re-renders the Falcos that name it.
    for informer in cache.watch(COMPONENTS):
        controller.watches(informer, falcos_naming(cache), any_of(GENERATION_CHANGED, AVAILABILITY_CHANGED))
    manager.add_controller(controller)
    return reconciler
