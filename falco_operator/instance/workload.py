"""The ConfigMap, Service and workload (DaemonSet or Deployment) of one Falco."""

from __future__ import annotations

import copy
from typing import Any

from ..api import Falco
from ..wiring.render import CASource
from .falcoconfig import WEB_PORT, base_config, config_hash, render
from .merge import merge_pod_template
from .naming import owned_metadata, selector_labels
from .options import BuildOptions
from .podtemplate import AGENT_CONTAINER, default_pod_template

Json = dict[str, Any]


def _metadata(falco: Falco, raw: Json, options: BuildOptions) -> Json:
    metadata = falco.metadata
    return owned_metadata(metadata.name or "", metadata.namespace or "", metadata.labels, options.excluded_labels, raw)


def falco_yaml(falco: Falco) -> str:
    return render(base_config(falco.spec.effective_engine, falco.spec.loads_image_defaults))


def build_configmap(falco: Falco, raw: Json, options: BuildOptions) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(falco, raw, options),
        "data": {"falco.yaml": falco_yaml(falco)},
    }


def build_service(falco: Falco, raw: Json, options: BuildOptions) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(falco, raw, options),
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels(falco.metadata.name or ""),
            "ports": [{"name": "web", "port": WEB_PORT, "targetPort": WEB_PORT, "protocol": "TCP"}],
        },
    }


def user_overlay(falco: Falco, options: BuildOptions) -> Json:
    """The user's podTemplateSpec, with the agent override moved to where the agent runs on this cluster."""
    overlay = copy.deepcopy(falco.spec.pod_template_spec or {})
    spec = overlay.get("spec")
    if not isinstance(spec, dict):
        return overlay
    source, target = ("containers", "initContainers") if options.native_sidecar else ("initContainers", "containers")
    moved = [c for c in spec.get(source) or [] if isinstance(c, dict) and c.get("name") == AGENT_CONTAINER]
    if moved:
        remaining = [c for c in spec[source] if c not in moved]
        if remaining:
            spec[source] = remaining
        else:
            del spec[source]
        spec[target] = [*(spec.get(target) or []), *moved]
    return overlay


def default_pull_policy(image: str) -> str:
    """What the API server gives a new container: ``Always`` for ``:latest`` or no tag, else ``IfNotPresent``."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def with_pull_policies(template: Json) -> Json:
    """Every container with its pull policy spelled out (a user's choice kept). The API server defaults it only
    when a container is created: left out, a DaemonSet whose image changes to ``:latest`` would keep
    ``IfNotPresent`` and never pull the moving tag again."""
    spec = template.get("spec") or {}
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            if isinstance(container, dict) and container.get("image") and not container.get("imagePullPolicy"):
                container["imagePullPolicy"] = default_pull_policy(str(container["image"]))
    return template


def build_pod_template(falco: Falco, options: BuildOptions, k8smeta_ca: CASource | None = None) -> Json:
    default = default_pod_template(falco, options, config_hash(falco_yaml(falco)), k8smeta_ca)
    return with_pull_policies(merge_pod_template(default, user_overlay(falco, options)))


def build_workload(falco: Falco, raw: Json, options: BuildOptions, k8smeta_ca: CASource | None = None) -> Json:
    """``k8smeta_ca``: the CA bundle of the TLS metacollector the Falco names, mounted for its k8smeta plugin."""
    name = falco.metadata.name or ""
    template = build_pod_template(falco, options, k8smeta_ca)
    spec: Json = {"selector": {"matchLabels": selector_labels(name)}, "template": template}
    if falco.spec.workload_type == "Deployment":
        spec["replicas"] = falco.spec.replicas or 1
        if falco.spec.strategy:
            spec["strategy"] = falco.spec.strategy.to_wire()
        kind = "Deployment"
    else:
        if falco.spec.update_strategy:
            spec["updateStrategy"] = falco.spec.update_strategy.to_wire()
        kind = "DaemonSet"
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": _metadata(falco, raw, options), "spec": spec}
