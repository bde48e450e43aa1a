"""The Falco kind (``instance.falcosecurity.dev/v1alpha1``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from .base import KubeModel, KubeObject, LabelSelector
from .schema_types import Conditions, IntOrString, PodTemplateSpec, cel, validations

WorkloadType = Literal["DaemonSet", "Deployment"]
EngineKind = Literal["modern_ebpf", "ebpf", "kmod", "nodriver"]


class RollingUpdate(KubeModel):
    max_unavailable: IntOrString | None = None
    max_surge: IntOrString | None = None


class DaemonSetUpdateStrategy(KubeModel):
    type: Literal["RollingUpdate", "OnDelete"] | None = None
    rolling_update: RollingUpdate | None = None


class DeploymentStrategy(KubeModel):
    type: Literal["RollingUpdate", "Recreate"] | None = None
    rolling_update: RollingUpdate | None = None


class Engine(KubeModel):
    kind: EngineKind


class FalcoRulesSelection(KubeModel):
    namespace_selector: LabelSelector | None = None
    """Namespaces whose FalcoRules this Falco loads: unset selects none, ``{}`` selects all."""


class FalcoSpec(KubeModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.replicas) || (has(self.type) && self.type == 'Deployment')",
                "replicas can only be set when type is Deployment",
                ".replicas",
            ),
            cel(
                "!has(self.strategy) || (has(self.type) && self.type == 'Deployment')",
                "strategy can only be set when type is Deployment (use updateStrategy for a DaemonSet)",
                ".strategy",
            ),
            cel(
                "!has(self.updateStrategy) || !has(self.type) || self.type == 'DaemonSet'",
                "updateStrategy can only be set when type is DaemonSet (use strategy for a Deployment)",
                ".updateStrategy",
            ),
        )
    )

    type: WorkloadType | None = None
    """Unset means DaemonSet."""
    replicas: Annotated[int, Field(ge=1)] | None = None
    version: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    pod_template_spec: PodTemplateSpec | None = None
    update_strategy: DaemonSetUpdateStrategy | None = None
    strategy: DeploymentStrategy | None = None
    engine: Engine | None = None
    falco_rules: FalcoRulesSelection | None = None

    @property
    def workload_type(self) -> WorkloadType:
        return self.type or "DaemonSet"

    @property
    def engine_kind(self) -> EngineKind:
        if self.engine:
            return self.engine.kind
        return "nodriver" if self.workload_type == "Deployment" else "modern_ebpf"


class FalcoStatus(KubeModel):
    resource_type: str | None = None
    version: str | None = None
    desired_replicas: int | None = None
    available_replicas: int | None = None
    unavailable_replicas: int | None = None
    updated_replicas: int | None = None
    observed_generation: int | None = None
    conditions: Conditions | None = None


class Falco(KubeObject):
    api_version: Literal["instance.falcosecurity.dev/v1alpha1"] = "instance.falcosecurity.dev/v1alpha1"
    kind: Literal["Falco"] = "Falco"
    spec: FalcoSpec = Field(default_factory=FalcoSpec)
    status: FalcoStatus | None = None
