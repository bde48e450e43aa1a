"""The Falco kind (`instance.falcosecurity.dev/v1alpha1`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from .base import KubeModel, KubeObject, LabelSelector
from .monitoring import FalcoMonitoring
from .oci import Verification
from .registries import Registries
from .rollout import Rollout
from .schema_types import (
    DNS_LABEL,
    Affinity,
    Conditions,
    IntOrString,
    PodTemplateSpec,
    ResourceRequirements,
    Tolerations,
    cel,
    validations,
)
from .services import ExtraServices

WorkloadType = Literal["DaemonSet", "Deployment"]
EngineKind = Literal["modern_ebpf", "kmod", "auto", "nodriver"]
KERNEL_ENGINES: tuple[EngineKind, ...] = ("modern_ebpf", "kmod", "auto")
"""The engines that watch the kernel: privileged (or, for modern_ebpf, least privileged), with the host mounted."""
MAX_BUF_SIZE_PRESET = 10


class RollingUpdate(KubeModel):
    max_unavailable: IntOrString | None = None
    """Pods that may be unavailable during the update: a number or a percentage."""
    max_surge: IntOrString | None = None
    """Pods that may be created above the desired number during the update."""


class DaemonSetUpdateStrategy(KubeModel):
    type: Literal["RollingUpdate", "OnDelete"] | None = None
    """How the DaemonSet replaces its pods."""
    rolling_update: RollingUpdate | None = None
    """Parameters of a rolling update."""


class DeploymentStrategy(KubeModel):
    type: Literal["RollingUpdate", "Recreate"] | None = None
    """How the Deployment replaces its pods."""
    rolling_update: RollingUpdate | None = None
    """Parameters of a rolling update."""


class Engine(KubeModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.leastPrivileged) || !self.leastPrivileged || self.kind == 'modern_ebpf'",
                "leastPrivileged applies to kind modern_ebpf only (kmod and auto load a kernel module: privileged)",
                ".leastPrivileged",
            ),
            cel(
                "!has(self.cpusForEachBuffer) || self.kind == 'modern_ebpf' || self.kind == 'auto'",
                "cpusForEachBuffer applies to kind modern_ebpf or auto only",
                ".cpusForEachBuffer",
            ),
            cel(
                "!has(self.bufSizePreset) || self.kind != 'nodriver'",
                "bufSizePreset applies to a kernel engine (modern_ebpf, kmod, auto), not nodriver",
                ".bufSizePreset",
            ),
            cel(
                "!has(self.dropFailedExit) || self.kind != 'nodriver'",
                "dropFailedExit applies to a kernel engine (modern_ebpf, kmod, auto), not nodriver",
                ".dropFailedExit",
            ),
        )
    )

    kind: EngineKind
    """Falco driver: `modern_ebpf`; `kmod` (a driver-loader init container loads the kernel module); `auto` (the
    driver loader picks modern_ebpf or kmod on each node); `nodriver` (plugins only). The legacy `ebpf` probe is
    gone since Falco 0.44."""
    least_privileged: bool | None = None
    """modern_ebpf only: the falco container gets the capabilities BPF, SYS_RESOURCE, PERFMON and SYS_PTRACE and an
    unconfined AppArmor profile instead of running privileged."""
    buf_size_preset: Annotated[int, Field(ge=0, le=MAX_BUF_SIZE_PRESET)] | None = None
    """Size preset of the per-CPU ring buffers (Falco's `buf_size_preset`: 4 is 8 MiB, each step doubles it);
    unset: Falco's default."""
    cpus_for_each_buffer: Annotated[int, Field(ge=0, le=4096)] | None = None
    """modern_ebpf and auto: CPUs sharing one ring buffer (0: one buffer for all); unset: Falco's default (2)."""
    drop_failed_exit: bool | None = None
    """Drop the exit events of failed system calls in the kernel (fewer events, less detail); unset: false."""


class ComponentReference(KubeModel):
    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    """A Component in the Falco's namespace."""


class FalcoRulesSelection(KubeModel):
    namespace_selector: LabelSelector | None = None
    """Namespaces whose FalcoRules this Falco loads: unset selects none, `{}` selects all."""
    rollout: Rollout | None = None
    """The staged rollout of the Rulesfile generated from the selected FalcoRules: a tenant's edit reaches this
    Falco's nodes step by step and is rolled back on a failed check (tenants cannot turn it off)."""


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
    """Deployment only; unset means 1."""
    version: Annotated[str, Field(min_length=1, max_length=128, json_schema_extra=validations(cel(
        "self.matches('^[A-Za-z0-9_][A-Za-z0-9_.-]*$')",
        "version is the Falco image tag: letters, digits, '_', '.' and '-', not starting with '.' or '-'",
    )))] | None = None  # fmt: skip
    """Falco image tag; unset means the operator's default. A `falco` container image in podTemplateSpec wins."""
    pod_template_spec: PodTemplateSpec | None = None
    """Merged over the generated pod template: containers, volumes and env by name, volume mounts by path."""
    update_strategy: DaemonSetUpdateStrategy | None = None
    """DaemonSet only: how pods are replaced."""
    strategy: DeploymentStrategy | None = None
    """Deployment only: how pods are replaced."""
    engine: Engine | None = None
    """Falco engine; unset means `modern_ebpf` for a DaemonSet and `nodriver` for a Deployment."""
    falco_rules: FalcoRulesSelection | None = None
    """Which namespaces' FalcoRules this Falco loads."""
    image_defaults: bool | None = None
    """Load what the Falco image ships: its default rules (/etc/falco/falco_rules.yaml) and its container plugin;
    unset or false: nothing but artifacts (the default)."""
    tolerations: Tolerations | None = None
    """The pods' tolerations; unset: a DaemonSet tolerates the control-plane and master NoSchedule taints, a
    Deployment none; `[]`: none."""
    node_selector: Annotated[dict[str, str], Field(max_length=64)] | None = None
    """Nodes the pods may run on, by label."""
    affinity: Affinity | None = None
    """The pods' affinity (node, pod and anti-affinity)."""
    priority_class_name: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """The pods' PriorityClass (a security agent usually deserves a high one, such as `system-node-critical`)."""
    resources: ResourceRequirements | None = None
    """The falco container's requests and limits; unset: requests 100m CPU and 512Mi, limits 1 CPU and 1Gi.
    Replaces the default whole."""
    services: ExtraServices | None = None
    """Extra Services `<falco>-<name>` selecting the Falco's pods, for plugin listeners (k8saudit's webhook on
    9765); a Service removed from the list is deleted."""
    monitoring: FalcoMonitoring | None = None
    """Monitoring of Falco itself."""
    registries: Registries | None = None
    """Registry hosts the artifact agents reach: a CA bundle for a host (from a ConfigMap of this namespace, mounted
    into the agent), and mirrors tried before it (air-gapped clusters). At most 16 entries, one per host."""

    artifact_verification: Verification | None = None
    """The administrator's signature policy for every OCI artifact this Falco's agents load (Rulesfiles and
    Plugins): each digest must carry a cosign signature of this key (or keyless identity), whatever the artifact's
    own `verify` says (when both are set, both must pass). An artifact author cannot weaken it. A change applies at
    once: the agents verify every artifact again."""

    sidekick: ComponentReference | None = None
    """A `falcosidekick` Component of this namespace: Falco sends every alert to it as JSON (once it is Available,
    the operator generates the Config `<falco>-wiring-sidekick` with `http_output`; condition ComponentsReady)."""
    metacollector: ComponentReference | None = None
    """A `metacollector` Component of this namespace: Falco's k8smeta plugin gets Kubernetes metadata from it (once
    it is Available, the operator generates the Plugin `<falco>-wiring-metacollector`; the library
    `libk8smeta.so` must be in the Falco image; condition ComponentsReady)."""

    @property
    def workload_type(self) -> WorkloadType:
        return self.type or "DaemonSet"

    @property
    def loads_image_defaults(self) -> bool:
        return self.image_defaults is True

    @property
    def engine_kind(self) -> EngineKind:
        return self.effective_engine.kind

    @property
    def effective_engine(self) -> Engine:
        if self.engine:
            return self.engine
        return Engine(kind="nodriver" if self.workload_type == "Deployment" else "modern_ebpf")


class ImageDefaultsSummary(KubeModel):
    rules: list[str] | None = None
    """The image's rules files the pods' falco.yaml lists (`/etc/falco/falco_rules.yaml`), before `rules.d`."""
    plugins: list[str] | None = None
    """The image's plugins the pods' agents configure (`container`)."""


class ArtifactSummary(KubeModel):
    selected: int = 0
    """Rulesfiles, Plugins and Configs in the namespace whose instanceSelector picks this Falco."""
    programmed: int = 0
    """Of those, the ones whose current generation every targeted Falco pod has."""
    failed: int = 0
    """Of those, the ones that failed on at least one Falco pod."""
    image_defaults: ImageDefaultsSummary | None = None
    """What the spec asks every pod to load from the Falco image besides artifacts (`spec.imageDefaults`); absent:
    nothing, the pods load artifacts only. A Rulesfile delivering `falco-rules` from OCI replaces the rules file and a
    Plugin named `container` the plugin: this says what the spec asks; each pod's ArtifactReport says what its
    Falco loads (`status.imageDefaults`)."""


class WorkloadStatus(KubeModel):
    """What a Falco's and a Component's status say of the workload that runs their pods."""

    resource_type: str | None = None
    """The workload kind that runs the pods: DaemonSet or Deployment (a Component: always Deployment)."""
    version: str | None = None
    """The version running (the image tag)."""
    desired_replicas: int | None = None
    """Pods the workload wants."""
    available_replicas: int | None = None
    """Pods ready for at least minReadySeconds."""
    unavailable_replicas: int | None = None
    """Pods wanted but not available."""
    updated_replicas: int | None = None
    """Pods running the current pod template."""
    observed_generation: int | None = None
    """The generation this status describes."""


class FalcoStatus(WorkloadStatus):
    conditions: Conditions | None = None
    """Reconciled, Available, Progressing; ServiceMonitor and ComponentsReady when the spec asks for them."""
    artifacts: ArtifactSummary | None = None
    """How many of the artifacts that select this Falco are programmed, and how many failed."""


class Falco(KubeObject):
    api_version: Literal["instance.falcosecurity.dev/v1alpha1"] = "instance.falcosecurity.dev/v1alpha1"
    kind: Literal["Falco"] = "Falco"
    spec: FalcoSpec = Field(default_factory=FalcoSpec)
    status: FalcoStatus | None = None
