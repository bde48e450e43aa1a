"""The Falco object: workload, engine, version, scheduling, pod overrides, services, monitoring."""

from __future__ import annotations

from typing import Any

from .engine import engine_spec
from .findings import Context
from .pod import pod_template
from .services import monitoring_spec, services_spec

Json = dict[str, Any]
SCHEDULING = {
    "tolerations": "tolerations",
    "nodeSelector": "nodeSelector",
    "affinity": "affinity",
    "podPriorityClassName": "priorityClassName",
    "resources": "resources",
}


def falco_manifest(context: Context, image_defaults: bool) -> Json:
    spec: Json = {}
    _workload(context, spec)
    engine = engine_spec(context)
    if engine is not None:
        spec["engine"] = engine
    context.handle("image.tag")
    if context.get("image.tag"):
        spec["version"] = str(context.get("image.tag"))
    if image_defaults:
        spec["imageDefaults"] = True
    _scheduling(context, spec)
    template = pod_template(context)
    if template:
        spec["podTemplateSpec"] = template
    services = services_spec(context)
    if services:
        spec["services"] = services
    monitoring = monitoring_spec(context)
    if monitoring:
        spec["monitoring"] = monitoring
    return {
        "apiVersion": "instance.falcosecurity.dev/v1alpha1",
        "kind": "Falco",
        "metadata": {"name": context.name, "namespace": context.namespace},
        "spec": spec,
    }


def _workload(context: Context, spec: Json) -> None:
    context.handle("controller.kind", "controller.deployment", "controller.daemonset")
    kind = str(context.get("controller.kind")).lower()
    if kind == "deployment":
        spec["type"] = "Deployment"
        spec["replicas"] = int(context.get("controller.deployment.replicas") or 1)
        context.unmapped_if_changed("controller.daemonset", "ignored with controller.kind deployment, as by the chart")
    elif kind == "daemonset":
        if context.changed("controller.daemonset.updateStrategy"):
            spec["updateStrategy"] = context.get("controller.daemonset.updateStrategy")
        context.unmapped_if_changed("controller.deployment", "ignored with controller.kind daemonset, as by the chart")
    else:
        context.unmapped("controller.kind", f"the chart knows daemonset and deployment, not {kind!r}: a DaemonSet")
    context.unmapped_if_changed("controller.labels", "the operator labels its workload itself")
    context.unmapped_if_changed("controller.annotations", "the operator annotates its workload itself")


def _scheduling(context: Context, spec: Json) -> None:
    context.handle(*SCHEDULING)
    for value, field in SCHEDULING.items():
        current = context.get(value)
        if value == "tolerations" or value == "resources":
            if context.changed(value):
                spec[field] = current if current is not None else []
        elif current:
            spec[field] = current
