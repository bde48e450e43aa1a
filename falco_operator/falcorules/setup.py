"""Wire the FalcoRule controller into a manager: what makes a Falco's generated rules change."""

from __future__ import annotations

from typing import Any

from ..kube import GENERATION_CHANGED, LABELS_CHANGED, Cache, Client, Controller, Manager, Request, any_of
from ..kube.resources import CONFIG_MAPS, NAMESPACES, NODES, PODS
from ..resources import ARTIFACTREPORTS, FALCORULES, FALCOS, RULESFILES
from ..status.reconciler import FALCO_PODS, node_metadata, pod_placement
from .controller import FalcoRulesReconciler, _selector

Json = dict[str, Any]
REPORT_COALESCING = 2.0


def setup_falcorules_controller(
    manager: Manager, client: Client, *, namespaces: tuple[str, ...] = (), workers: int = 2
) -> FalcoRulesReconciler:
    cache = Cache(manager, namespaces)
    falcos = cache.watch(FALCOS)
    rules = cache.watch(FALCORULES)
    namespace_informers = cache.watch(NAMESPACES)
    rulesfiles = cache.watch(RULESFILES)
    reports = cache.watch(ARTIFACTREPORTS)
    cache.watch(CONFIG_MAPS, label_selector="artifact.falcosecurity.dev/for-falco")
    cache.watch(PODS, label_selector=FALCO_PODS, transform=pod_placement)
    cache.watch(NODES, transform=node_metadata)
    reconciler = FalcoRulesReconciler(client, cache)
    controller = Controller("falcorules", reconciler, metrics=manager.metrics, workers=workers)

    def selecting(obj: Json) -> list[Request]:
        """The Falcos whose namespace selector matches the namespace of ``obj`` (a FalcoRule)."""
        namespace = (obj.get("metadata") or {}).get("namespace") or ""
        found = cache.get(NAMESPACES, namespace)
        labels = dict(((found or {}).get("metadata") or {}).get("labels") or {})
        requests = []
        for falco in cache.objects(FALCOS):
            selector = _selector(falco)
            if selector is not None and selector.matches(labels):
                requests.append(Request.for_object(falco))
        return requests

    def with_selectors(_: Json) -> list[Request]:
        return [Request.for_object(falco) for falco in cache.objects(FALCOS) if _selector(falco) is not None]

    def in_namespace(obj: Json) -> list[Request]:
        namespace = (obj.get("metadata") or {}).get("namespace") or ""
        return [Request.for_object(falco) for falco in cache.in_namespace(FALCOS, namespace)
                if _selector(falco) is not None]  # fmt: skip

    for informer in falcos:
        controller.for_(informer, any_of(GENERATION_CHANGED, LABELS_CHANGED))
    for informer in rules:
        controller.watches(informer, selecting, GENERATION_CHANGED)
    for informer in namespace_informers:
        controller.watches(informer, with_selectors, LABELS_CHANGED)
    for informer in rulesfiles:
        controller.watches(informer, in_namespace, GENERATION_CHANGED)
    for informer in reports:
        controller.watches(informer, in_namespace, delay=REPORT_COALESCING)
    manager.add_controller(controller)
    return reconciler
