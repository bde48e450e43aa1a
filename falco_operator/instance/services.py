"""The extra Services of ``spec.services``: ``<falco>-<name>``, selecting the Falco's pods, owned by the Falco."""

from __future__ import annotations

from typing import Any

from ..api import Falco
from ..api.services import ExtraService, ServicePort
from .naming import INSTANCE_LABEL, MANAGED_BY, OPERATOR, owned_metadata, selector_labels
from .options import BuildOptions

Json = dict[str, Any]
SERVICE_LABEL = "instance.falcosecurity.dev/service"
"""On every extra Service: the entry's name. The headless Service ``<falco>`` never has it, so the ServiceMonitor
selects that one alone and only labelled Services are ever candidates for removal."""


def _port(port: ServicePort) -> Json:
    wire: Json = {"port": port.port, "protocol": port.protocol,
                  "targetPort": port.port if port.target_port is None else port.target_port}  # fmt: skip
    if port.name is not None:
        wire["name"] = port.name
    if port.node_port is not None:
        wire["nodePort"] = port.node_port
    return wire


def build_extra_service(falco: Falco, raw: Json, options: BuildOptions, entry: ExtraService) -> Json:
    falco_name = falco.metadata.name or ""
    # Labelled as the Falco's other objects (instance = the Falco's name), under a name of its own.
    metadata = owned_metadata(falco_name, falco.metadata.namespace or "", falco.metadata.labels,
                              options.excluded_labels, raw)  # fmt: skip
    metadata["name"] = entry.service_name(falco_name)
    metadata["labels"][SERVICE_LABEL] = entry.name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": entry.type,
            "selector": selector_labels(falco_name),
            "ports": [_port(port) for port in entry.ports],
        },
    }


def build_extra_services(falco: Falco, raw: Json, options: BuildOptions) -> list[Json]:
    return [build_extra_service(falco, raw, options, entry) for entry in falco.spec.services or []]


def removable_services(live: list[Json], falco_name: str, uid: str, wanted: set[str]) -> list[Json]:
    """Extra Services of this Falco that its spec no longer lists: controlled by the Falco (its uid), carrying the
    operator's labels and the extra-Service label, and not wanted. Anything else is never touched."""

    def ours(service: Json) -> bool:
        metadata = service.get("metadata") or {}
        labels = metadata.get("labels") or {}
        controlled = any(ref.get("uid") == uid and ref.get("controller") for ref in metadata.get("ownerReferences")
                         or [])  # fmt: skip
        return (
            controlled
            and labels.get(MANAGED_BY) == OPERATOR
            and labels.get(INSTANCE_LABEL) == falco_name
            and SERVICE_LABEL in labels
        )

    return [service for service in live if ours(service) and service["metadata"]["name"] not in wanted]
