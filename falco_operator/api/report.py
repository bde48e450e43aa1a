"""The ArtifactReport kind: what one agent materialized, written by that agent only."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import KubeModel, KubeObject

ArtifactState = Literal["Installed", "Loaded", "Invalid", "Failed", "Pending"]


class ArtifactReportSpec(KubeModel):
    node_name: str | None = None
    instance: str | None = None


class ReportedArtifact(KubeModel):
    kind: Literal["Rulesfile", "Plugin", "Config", "FalcoRule"]
    name: str
    generation: int | None = None
    digest: str | None = None
    sha256: str | None = None
    files: list[str] | None = None
    state: ArtifactState
    reason: str | None = None
    message: str | None = None


class FalcoProbe(KubeModel):
    version: str | None = None
    reachable: bool | None = None


class ArtifactReportStatus(KubeModel):
    artifacts: (
        Annotated[
            list[ReportedArtifact],
            Field(json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["kind", "name"]}),
        ]
        | None
    ) = None
    falco: FalcoProbe | None = None


class ArtifactReport(KubeObject):
    api_version: Literal["artifact.falcosecurity.dev/v1alpha1"] = "artifact.falcosecurity.dev/v1alpha1"
    kind: Literal["ArtifactReport"] = "ArtifactReport"
    spec: ArtifactReportSpec = Field(default_factory=ArtifactReportSpec)
    status: ArtifactReportStatus | None = None
