"""`spec.services`: extra Services in front of the Falco pods, for the listeners of plugins (k8saudit's webhook)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, WithJsonSchema

from .base import KubeModel
from .schema_types import DNS_LABEL, cel, validations

MAX_SERVICES = 8
"""The most extra Services one Falco may ask for (a plugin listener needs one; the chart's users have one or two)."""
MAX_PORTS = 16
"""The most ports one extra Service may have."""
SERVICE_NAME_BUDGET = 62
"""``<falco>-<name>`` is a Service name, a DNS-1035 label of at most 63 characters: name + Falco name <= 62."""

_TARGET_PORT_RULE = (
    "type(self) == int ? self >= 1 && self <= 65535 : "
    "self.size() <= 15 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && self.matches('[a-z]') "
    "&& !self.contains('--')"
)
TargetPort = Annotated[
    int | str,
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "maxLength": 15,
            **validations(
                cel(
                    _TARGET_PORT_RULE,
                    "targetPort must be a port number 1-65535 or the name of a port of the falco container (up to "
                    "15 lowercase letters, digits and '-', with at least one letter, no '--')",
                )
            ),
        }
    ),
]
"""A Service's ``targetPort``: a number, or the name of a container port (an IANA service name)."""


class ServicePort(KubeModel):
    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)] | None = None
    """Port name (a DNS label), e.g. `webhook`: required when the Service has more than one port, as Kubernetes
    requires; unique within the Service."""
    port: Annotated[int, Field(ge=1, le=65535)]
    """The port the Service listens on, e.g. 9765 for k8saudit's webhook."""
    target_port: TargetPort | None = None
    """The pods' port: a number, or the name of a port you declare on the `falco` container in podTemplateSpec;
    unset means `port`."""
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    """TCP, UDP or SCTP."""
    node_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """NodePort and LoadBalancer only: the port on every node (in the cluster's node port range); unset lets
    Kubernetes pick one."""


class ExtraService(KubeModel):
    """A Service `<falco>-<name>` selecting the Falco's pods, owned by the Falco."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.type != 'ClusterIP' || self.ports.all(p, !has(p.nodePort))",
                "nodePort can only be set when type is NodePort or LoadBalancer",
                ".ports",
            ),
            cel(
                "self.ports.all(p, self.ports.exists_one(q, q.port == p.port && q.protocol == p.protocol))",
                "two ports of one Service cannot have the same port and protocol",
                ".ports",
            ),
            cel(
                "self.ports.size() == 1 || self.ports.all(p, has(p.name))",
                "a Service with more than one port needs a name on every port",
                ".ports",
            ),
            cel(
                "self.ports.all(p, !has(p.name) || self.ports.exists_one(q, has(q.name) && q.name == p.name))",
                "two ports of one Service cannot have the same name",
                ".ports",
            ),
        )
    )

    name: Annotated[str, Field(min_length=1, max_length=SERVICE_NAME_BUDGET - 1, pattern=DNS_LABEL)]
    """Names the Service `<falco>-<name>` (a DNS label; the whole name is at most 63 characters), unique in the
    list."""
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    """ClusterIP, NodePort or LoadBalancer."""
    ports: Annotated[
        list[ServicePort],
        Field(
            min_length=1,
            max_length=MAX_PORTS,
            json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"]},
        ),
    ]
    """The Service's ports, one per port and protocol."""

    def service_name(self, falco_name: str) -> str:
        return f"{falco_name}-{self.name}"


ExtraServices = Annotated[
    list[ExtraService],
    Field(
        max_length=MAX_SERVICES,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    ),
]

SERVICE_NAME_RULE = {
    "rule": f"!has(self.spec) || !has(self.spec.services) || "
    f"self.spec.services.all(s, self.metadata.name.size() + s.name.size() <= {SERVICE_NAME_BUDGET})",
    "message": "spec.services: a Service is named <falco>-<name>, at most 63 characters: shorten the entry's name "
    "(or the Falco's)",
    "fieldPath": ".spec.services",
}
"""The object-level rule (it needs ``metadata.name``) that keeps every extra Service's name a valid one."""
