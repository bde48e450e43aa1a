"""``services`` (plugin listeners such as k8saudit's webhook) and the metrics Service -> ``spec.services``;
``serviceMonitor`` -> ``spec.monitoring``."""

from __future__ import annotations

from typing import Any

from .findings import Context

Json = dict[str, Any]
PORT_FIELDS = ("name", "port", "targetPort", "protocol", "nodePort")


def services_spec(context: Context) -> list[Json]:
    context.handle("services", "metrics.service")
    services: list[Json] = []
    for index, service in enumerate(context.get("services") or []):
        if not isinstance(service, dict) or not service.get("name"):
            context.unmapped(f"services.{index}", "a service needs a name")
            continue
        services.append(_service(context, f"services.{index}", service))
    if context.get("metrics.enabled") and context.get("metrics.service.create"):
        ports = [{"name": name, **port} for name, port in (context.get("metrics.service.ports") or {}).items()]
        metrics = {"name": "metrics", "type": context.get("metrics.service.type"), "ports": ports}
        services.append(_service(context, "metrics.service", metrics))
        for field in ("labels", "annotations"):
            context.unmapped_if_changed(
                f"metrics.service.{field}", "spec.services entries take no labels or annotations"
            )
    return services


def _service(context: Context, path: str, service: Json) -> Json:
    entry: Json = {"name": str(service["name"])}
    if service.get("type"):
        entry["type"] = service["type"]
    ports = []
    for index, port in enumerate(service.get("ports") or []):
        ports.append({key: port[key] for key in PORT_FIELDS if port.get(key) not in (None, "")})
        for key in port:
            if key not in PORT_FIELDS and port[key] not in (None, "", []):
                context.unmapped(
                    f"{path}.ports.{index}.{key}",
                    "spec.services ports take name, port, targetPort, protocol and nodePort only",
                )
    entry["ports"] = ports
    for key in service:
        if key not in ("name", "type", "ports") and service[key] not in (None, "", [], {}):
            context.unmapped(f"{path}.{key}", "spec.services entries take name, type and ports only")
    return entry


def monitoring_spec(context: Context) -> Json | None:
    context.handle("serviceMonitor", "grafana")
    if context.get("grafana.dashboards.enabled"):
        context.unmapped(
            "grafana.dashboards.enabled",
            "the operator creates no dashboard ConfigMap for a Falco: apply manifests/grafana (kustomize), the "
            "dashboards the operator ships",
        )
    context.unmapped_if_changed("grafana.dashboards.configMaps", "the operator creates no Grafana dashboard ConfigMap")
    if not context.get("serviceMonitor.create"):
        context.unmapped_if_changed("serviceMonitor", "ignored while serviceMonitor.create is false, as by the chart")
        return None
    for leaf in (
        "path",
        "labels",
        "selector",
        "interval",
        "scheme",
        "tlsConfig",
        "scrapeTimeout",
        "relabelings",
        "targetLabels",
        "endpointPort",
    ):
        context.unmapped_if_changed(
            f"serviceMonitor.{leaf}",
            "spec.monitoring.serviceMonitor takes no options: "
            "the operator's ServiceMonitor scrapes Falco's /metrics with its own settings",
        )
    return {"serviceMonitor": {}}
