"""Pydantic models of the project's custom resources and the CRD schemas generated from them. The artifact agent reads
and writes through the plain classes of ``plain`` and ``plain_report`` instead (no pydantic on its path)."""

from typing import TYPE_CHECKING

from falco_operator.lazy import lazy_exports

if TYPE_CHECKING:
    from .artifacts import (
        ArtifactStatus,
        Config,
        ConfigConfigMapRef,
        ConfigSpec,
        NodeCounts,
        Plugin,
        PluginConfig,
        PluginSpec,
        RulesConfigMapRef,
        Rulesfile,
        RulesfileSpec,
    )
    from .base import Condition, KubeModel, KubeObject, LabelSelector, LabelSelectorRequirement, ObjectMeta
    from .component import Component, ComponentSpec, ComponentStatus, ComponentType
    from .falco import ArtifactSummary, Engine, Falco, FalcoRulesSelection, FalcoSpec, FalcoStatus
    from .falcorule import FalcoRule, FalcoRuleSpec, FalcoRuleStatus
    from .kinds import ALL_KINDS, ARTIFACT_GROUP, INSTANCE_GROUP, VERSION, KindInfo
    from .oci import ImageRef, OCIArtifact, Registry, RulesOCIArtifact
    from .ocirefs import CredentialsRef, OCILocation, parse_reference
    from .report import ArtifactReport, ArtifactReportSpec, ArtifactReportStatus, FalcoProbe, ReportedArtifact
    from .schema import custom_resource_definition, openapi_schema

__all__ = [
    "ALL_KINDS",
    "ARTIFACT_GROUP",
    "INSTANCE_GROUP",
    "VERSION",
    "ArtifactReport",
    "ArtifactReportSpec",
    "ArtifactReportStatus",
    "ArtifactStatus",
    "ArtifactSummary",
    "Component",
    "ComponentSpec",
    "ComponentStatus",
    "ComponentType",
    "Condition",
    "Config",
    "ConfigConfigMapRef",
    "ConfigSpec",
    "CredentialsRef",
    "Engine",
    "Falco",
    "FalcoProbe",
    "FalcoRule",
    "FalcoRuleSpec",
    "FalcoRuleStatus",
    "FalcoRulesSelection",
    "FalcoSpec",
    "FalcoStatus",
    "ImageRef",
    "KindInfo",
    "KubeModel",
    "KubeObject",
    "LabelSelector",
    "LabelSelectorRequirement",
    "NodeCounts",
    "OCIArtifact",
    "OCILocation",
    "ObjectMeta",
    "Plugin",
    "PluginConfig",
    "PluginSpec",
    "Registry",
    "ReportedArtifact",
    "RulesConfigMapRef",
    "RulesOCIArtifact",
    "Rulesfile",
    "RulesfileSpec",
    "custom_resource_definition",
    "openapi_schema",
    "parse_reference",
]

__getattr__ = lazy_exports(__name__, __file__)
