"""The Component kind (`instance.falcosecurity.dev/v1alpha1`): what runs next to Falco — the k8s-metacollector,
Falcosidekick and its UI — and what a Falco needs to know to use it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from .base import KubeModel, KubeObject
from .falco import DeploymentStrategy, WorkloadStatus
from .schema_types import Conditions, PodTemplateSpec, cel, validations

ComponentType = Literal["metacollector", "falcosidekick", "falcosidekick-ui"]
COMPONENT_TYPES: tuple[ComponentType, ...] = ("metacollector", "falcosidekick", "falcosidekick-ui")

ObjectName = Annotated[str, Field(min_length=1, max_length=253)]


class LocalObjectReference(KubeModel):
    name: ObjectName
    """Name of an object in the Component's namespace."""


class KeyReference(KubeModel):
    name: ObjectName
    """Name of the object in the Component's namespace."""
    key: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """The key that holds the value; unset: the kind's usual key (`ca.crt` for a CA bundle)."""


class CABundleSource(KubeModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.secretRef) != has(self.configMapRef)",
                "set exactly one of secretRef and configMapRef",
            )
        )
    )

    secret_ref: KeyReference | None = None
    """A Secret holding the PEM bundle."""
    config_map_ref: KeyReference | None = None
    """A ConfigMap holding the PEM bundle."""


class ComponentSelection(KubeModel):
    type: ComponentType
    """`metacollector` (k8s-metacollector), `falcosidekick` or `falcosidekick-ui`."""
    version: Annotated[str, Field(min_length=1, max_length=128, json_schema_extra=validations(cel(
        "self.matches('^[A-Za-z0-9_][A-Za-z0-9_.-]*$')",
        "version is the image tag: letters, digits, '_', '.' and '-', not starting with '.' or '-'",
    )))] | None = None  # fmt: skip
    """Image tag; unset means the operator's default for the type. An image in podTemplateSpec wins."""


class MetacollectorTLS(KubeModel):
    secret_ref: LocalObjectReference
    """A `kubernetes.io/tls` Secret: the collector's certificate (`tls.crt`) and key (`tls.key`)."""
    ca_bundle: CABundleSource
    """The CA that signed the certificate, given to Falco's k8smeta plugin (`caPEMBundle`)."""


class MetacollectorOptions(KubeModel):
    tls: MetacollectorTLS | None = None
    """Serve the gRPC channel to Falco's k8smeta plugin over TLS; unset: plaintext, as the charts do."""


class SidekickOptions(KubeModel):
    config_secret_ref: LocalObjectReference | None = None
    """A Secret whose keys become Falcosidekick's environment (its outputs: `SLACK_WEBHOOKURL`...): nothing secret
    is written in the Component."""
    web_ui: Annotated[LocalObjectReference | None, Field(alias="webUI")] = None
    """A `falcosidekick-ui` Component of this namespace to forward every event to."""


class RedisStorage(KubeModel):
    size: Annotated[str, Field(min_length=1, max_length=64)]
    """Size of the PersistentVolumeClaim, e.g. `1Gi`."""
    storage_class_name: ObjectName | None = None
    """StorageClass of the claim; unset: the cluster's default."""


class Redis(KubeModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!(has(self.address) && has(self.storage))",
                "set either address (your Redis) or storage (for the Redis the operator deploys), not both",
            )
        )
    )

    address: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """`host:port` of a Redis with RediSearch you run; unset: the operator deploys one next to the UI."""
    storage: RedisStorage | None = None
    """Persist the deployed Redis on a PersistentVolumeClaim; unset: an emptyDir (events are lost with the pod)."""
    password_secret_ref: KeyReference | None = None
    """A Secret holding the Redis password (key `password` unless `key` says otherwise)."""


class SidekickUIOptions(KubeModel):
    redis: Redis | None = None
    """Where the UI keeps events; unset: a Redis deployed by the operator, on an emptyDir."""


class ComponentSpec(KubeModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.metacollector) || self.component.type == 'metacollector'",
                "metacollector options need component.type metacollector",
                ".metacollector",
            ),
            cel(
                "!has(self.falcosidekick) || self.component.type == 'falcosidekick'",
                "falcosidekick options need component.type falcosidekick",
                ".falcosidekick",
            ),
            cel(
                "!has(self.falcosidekickUI) || self.component.type == 'falcosidekick-ui'",
                "falcosidekickUI options need component.type falcosidekick-ui",
                ".falcosidekickUI",
            ),
            cel(
                "self.component.type == oldSelf.component.type",
                "component.type cannot be changed: create another Component",
                ".component.type",
            ),
        )
    )

    component: ComponentSelection
    """What this Component runs."""
    replicas: Annotated[int, Field(ge=0, le=100)] | None = None
    """Pods of the Deployment; unset means 1."""
    strategy: DeploymentStrategy | None = None
    """How the Deployment replaces its pods."""
    pod_template_spec: PodTemplateSpec | None = None
    """Merged over the generated pod template, by the same rules as a Falco's."""
    metacollector: MetacollectorOptions | None = None
    """Type metacollector only."""
    falcosidekick: SidekickOptions | None = None
    """Type falcosidekick only."""
    falcosidekick_ui: Annotated[SidekickUIOptions | None, Field(alias="falcosidekickUI")] = None
    """Type falcosidekick-ui only."""

    @property
    def type(self) -> ComponentType:
        return self.component.type


class ComponentStatus(WorkloadStatus):
    service: str | None = None
    """The address Falco and other Components reach it at: `<name>.<namespace>.svc:<port>`."""
    conditions: Conditions | None = None
    """Reconciled, Available, Progressing."""


class Component(KubeObject):
    api_version: Literal["instance.falcosecurity.dev/v1alpha1"] = "instance.falcosecurity.dev/v1alpha1"
    kind: Literal["Component"] = "Component"
    spec: ComponentSpec
    status: ComponentStatus | None = None
