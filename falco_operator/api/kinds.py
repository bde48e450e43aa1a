"""Every custom resource kind of the project: names, schema models, printer columns."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from .artifacts import ArtifactStatus, ConfigSpec, PluginSpec, RulesfileSpec
from .component import ComponentSpec, ComponentStatus
from .falco import FalcoSpec, FalcoStatus
from .falcorule import FalcoRuleSpec, FalcoRuleStatus
from .report import ArtifactReportSpec, ArtifactReportStatus
from .services import SERVICE_NAME_RULE

INSTANCE_GROUP = "instance.falcosecurity.dev"
ARTIFACT_GROUP = "artifact.falcosecurity.dev"
VERSION = "v1alpha1"


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0


@dataclass(frozen=True)
class KindInfo:
    group: str
    kind: str
    plural: str
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    spec_required: bool = True
    description: str = ""
    object_rules: tuple[dict[str, str], ...] = ()
    """CEL rules on the whole object (they may read ``metadata.name``)."""

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{VERSION}"


def _condition(name: str) -> PrinterColumn:
    return PrinterColumn(name, f'.status.conditions[?(@.type=="{name}")].status')


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")
NODES = PrinterColumn("Nodes", ".status.nodes.summary")
LOADED = PrinterColumn("Loaded", ".status.nodes.loaded", "integer")
"""Falco pods whose Falco confirmed the current content (Falco reports no config fragment: Configs have none)."""
PRIORITY = PrinterColumn("Priority", ".spec.priority", "integer")


def workload_columns(first: PrinterColumn) -> tuple[PrinterColumn, ...]:
    """The columns of a kind that runs a workload (Falco, Component): ``first``, then the WorkloadStatus fields."""
    return (
        first,
        PrinterColumn("Version", ".status.version"),
        PrinterColumn("Desired", ".status.desiredReplicas", "integer"),
        PrinterColumn("Ready", ".status.availableReplicas", "integer"),
        PrinterColumn("Updated", ".status.updatedReplicas", "integer"),
        _condition("Reconciled"),
        _condition("Available"),
        AGE,
    )


FALCO = KindInfo(
    group=INSTANCE_GROUP,
    kind="Falco",
    plural="falcos",
    spec_model=FalcoSpec,
    status_model=FalcoStatus,
    columns=workload_columns(PrinterColumn("Type", ".status.resourceType")),
    categories=("falcosecurity", "instances"),
    short_names=("falco",),
    spec_required=False,
    description="A Falco deployment: a DaemonSet (default) or a Deployment running Falco and its artifact agent.",
    object_rules=(
        {
            "rule": "self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
            "message": "a Falco's name must be a DNS label: at most 63 lowercase letters, digits and '-', starting "
            "with a letter and ending with a letter or digit (it names the Falco's Service and is a label value)",
        },
        SERVICE_NAME_RULE,
    ),
)
RULESFILE = KindInfo(
    group=ARTIFACT_GROUP,
    kind="Rulesfile",
    plural="rulesfiles",
    spec_model=RulesfileSpec,
    status_model=ArtifactStatus,
    columns=(PRIORITY, _condition("Programmed"), NODES, LOADED, AGE),
    categories=("falcosecurity", "artifacts"),
    description="Falco rules from an OCI artifact, a ConfigMap or inline, delivered to the selected Falco pods.",
)
PLUGIN = KindInfo(
    group=ARTIFACT_GROUP,
    kind="Plugin",
    plural="plugins",
    spec_model=PluginSpec,
    status_model=ArtifactStatus,
    columns=(_condition("Programmed"), NODES, LOADED, AGE),
    categories=("falcosecurity", "artifacts"),
    spec_required=False,
    description="A Falco plugin: its library from an OCI artifact (optional) and its configuration entry.",
)
CONFIG = KindInfo(
    group=ARTIFACT_GROUP,
    kind="Config",
    plural="configs",
    spec_model=ConfigSpec,
    status_model=ArtifactStatus,
    columns=(PRIORITY, _condition("Programmed"), NODES, AGE),
    categories=("falcosecurity", "artifacts"),
    description="A falco.yaml fragment delivered to the config.d directory of the selected Falco pods.",
)
FALCORULE = KindInfo(
    group=ARTIFACT_GROUP,
    kind="FalcoRule",
    plural="falcorules",
    spec_model=FalcoRuleSpec,
    status_model=FalcoRuleStatus,
    columns=(
        PrinterColumn("Rule", ".spec.rule"),
        PrinterColumn("Priority", ".spec.priority"),
        _condition("Accepted"),
        _condition("Programmed"),
        AGE,
    ),
    categories=("falcosecurity", "artifacts"),
    description="One Falco rule owned by an application team, scoped to its namespace.",
)
ARTIFACTREPORT = KindInfo(
    group=ARTIFACT_GROUP,
    kind="ArtifactReport",
    plural="artifactreports",
    spec_model=ArtifactReportSpec,
    status_model=ArtifactReportStatus,
    columns=(
        PrinterColumn("Node", ".spec.nodeName"),
        PrinterColumn("Instance", ".spec.instance"),
        PrinterColumn("Falco", ".status.falco.reachable"),
        AGE,
    ),
    categories=("falcosecurity", "artifacts"),
    spec_required=False,
    description="What the artifact agent of one Falco pod materialized; written by that agent only.",
)

COMPONENT = KindInfo(
    group=INSTANCE_GROUP,
    kind="Component",
    plural="components",
    spec_model=ComponentSpec,
    status_model=ComponentStatus,
    columns=workload_columns(PrinterColumn("Component", ".spec.component.type")),
    categories=("falcosecurity", "instances"),
    short_names=("fcomp",),
    description="What runs next to Falco: the k8s-metacollector, Falcosidekick or its UI, as a Deployment.",
    object_rules=(
        {
            "rule": "self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
            "message": "a Component's name must be a DNS label: at most 63 lowercase letters, digits and '-', "
            "starting with a letter and ending with a letter or digit (it names the Component's Service)",
        },
        {
            "rule": "self.spec.component.type != 'falcosidekick-ui' || has(self.spec.falcosidekickUI) && "
            "has(self.spec.falcosidekickUI.redis) && has(self.spec.falcosidekickUI.redis.address) || "
            "self.metadata.name.size() <= 57",
            "message": "a falcosidekick-ui Component that deploys its Redis has a name of at most 57 characters "
            "(its Redis Service is named <name>-redis, a DNS label of at most 63)",
        },
    ),
)
ALL_KINDS: tuple[KindInfo, ...] = (FALCO, COMPONENT, RULESFILE, PLUGIN, CONFIG, FALCORULE, ARTIFACTREPORT)
