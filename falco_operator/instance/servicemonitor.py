"""The ServiceMonitor of ``spec.monitoring.serviceMonitor`` and whether the cluster serves the kind at all."""

from __future__ import annotations

from typing import Any

from ..api import Falco
from ..kube.resources import Resource
from .naming import owned_metadata, selector_labels
from .options import BuildOptions
from .services import SERVICE_LABEL

Json = dict[str, Any]
MONITORING_GROUP = "monitoring.coreos.com"
SERVICE_MONITORS = Resource(MONITORING_GROUP, "v1", "ServiceMonitor", "servicemonitors", True)
SERVICE_MONITOR_CRD = f"servicemonitors.{MONITORING_GROUP}"
CONDITION = "ServiceMonitor"


def crd_serves_service_monitors(crd: Json | None) -> bool:
    """The CRD exists, is established and serves ``v1``: a ServiceMonitor can be created now."""
    if crd is None or (crd.get("metadata") or {}).get("deletionTimestamp"):
        return False
    spec, status = crd.get("spec") or {}, crd.get("status") or {}
    established = any(c.get("type") == "Established" and c.get("status") == "True"
                      for c in status.get("conditions") or [])  # fmt: skip
    served = any(v.get("name") == "v1" and v.get("served") for v in spec.get("versions") or [])
    return established and served


def wants_service_monitor(falco: Falco) -> bool:
    return falco.spec.monitoring is not None and falco.spec.monitoring.service_monitor is not None


def build_service_monitor(falco: Falco, raw: Json, options: BuildOptions) -> Json:
    """Scrapes ``/metrics`` on the ``web`` port of the headless Service ``<falco>`` (not the extra Services)."""
    settings = falco.spec.monitoring.service_monitor if falco.spec.monitoring else None
    name = falco.metadata.name or ""
    metadata = owned_metadata(name, falco.metadata.namespace or "", falco.metadata.labels, options.excluded_labels,
                              raw)  # fmt: skip
    # The user's labels (a Prometheus's serviceMonitorSelector) never replace the ones the operator selects by.
    metadata["labels"] = {**((settings.labels if settings else None) or {}), **metadata["labels"]}
    # Plain HTTP, the ServiceMonitor default: the operator's falco.yaml serves the web server without TLS.
    endpoint: Json = {"port": "web", "path": "/metrics"}
    if settings and settings.interval:
        endpoint["interval"] = settings.interval
    if settings and settings.scrape_timeout:
        endpoint["scrapeTimeout"] = settings.scrape_timeout
    return {
        "apiVersion": SERVICE_MONITORS.api_version,
        "kind": SERVICE_MONITORS.kind,
        "metadata": metadata,
        "spec": {
            "selector": {
                "matchLabels": selector_labels(name),
                "matchExpressions": [{"key": SERVICE_LABEL, "operator": "DoesNotExist"}],
            },
            "endpoints": [endpoint],
        },
    }


def monitor_condition(status: bool, reason: str, message: str, generation: int) -> Json:
    return {"type": CONDITION, "status": "True" if status else "False", "reason": reason, "message": message,
            "observedGeneration": generation}  # fmt: skip


NOT_SERVED = (
    "spec.monitoring.serviceMonitor is set, but this cluster does not serve ServiceMonitors "
    f"({MONITORING_GROUP}/v1): install the Prometheus Operator's CRDs; the operator creates the monitor as soon as "
    "they are served"
)
