"""The ArtifactReport kind: what one agent materialized, written by that agent only."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import KubeModel, KubeObject
from .rollout import ReportedAnalysis

ArtifactState = Literal["Installed", "Loaded", "Refused", "Invalid", "Failed", "Pending"]


class ArtifactReportSpec(KubeModel):
    node_name: str | None = None
    """Node of the agent's pod."""
    instance: str | None = None
    """Name of the Falco the agent serves."""


class RefreshProblem(KubeModel):
    reason: str
    """One CamelCase word, as a failed pull gives it (`Unauthorized`, `Unreachable`, ...)."""
    message: str
    """What went wrong, for people."""


class ReportedArtifact(KubeModel):
    kind: Literal["Rulesfile", "Plugin", "Config", "FalcoRule"]
    """Kind of the artifact."""
    name: str
    """Name of the artifact."""
    generation: int | None = None
    """Generation of the artifact that was materialized."""
    digest: str | None = None
    """OCI digest pulled, for OCI sources."""
    signer: str | None = None
    """OCI sources under a verification policy: the fingerprint (`sha256:` of the DER public key) of each key whose
    cosign signature the digest carries, or the certificate identity of a keyless policy, comma-separated."""
    sha256: str | None = None
    """SHA-256 of the content written."""
    config_map_sha256: str | None = None
    """SHA-256 of the ConfigMap content written (the key's bytes), for an artifact with a ConfigMap source: the
    operator compares it with the ConfigMap's current content."""
    files: list[str] | None = None
    """Files written for the artifact."""
    state: ArtifactState
    """Installed (written), Loaded (Falco confirmed), Refused (written, and Falco refused the reload that would
    load it: it runs what it loaded before), Invalid, Failed or Pending."""
    reason: str | None = None
    """One CamelCase word for the state."""
    message: str | None = None
    """What happened, for people."""
    refresh_problem: RefreshProblem | None = None
    """Why the OCI source could not be resolved again; the content resolved before stays delivered."""
    analysis: ReportedAnalysis | None = None
    """For an artifact in a staged rollout whose candidate generation runs here: this node's verdict on it."""


class FalcoProbe(KubeModel):
    version: str | None = None
    """Falco version reported by its web server."""
    reachable: bool | None = None
    """Whether the agent reached Falco's web server."""


class ReportedImageDefaults(KubeModel):
    rules: list[str] | None = None
    """The image's rules files this pod's Falco loads (`/etc/falco/falco_rules.yaml`, before `rules.d`); absent
    while a Rulesfile delivering Falco's default rules from OCI replaces them (`replacedBy`)."""
    rules_sha256: str | None = None
    """SHA-256 of the agent's copy of the image's rules file, as Falco's rules metric lists `falco_rules.yaml`;
    absent when the copy is missing or not valid rules (Falco still reads the image's own file)."""
    plugins: list[str] | None = None
    """The image's plugins the agent configures for Falco (`container`); absent while a Plugin whose entry is
    named `container` replaces it (`replacedBy`)."""
    replaced_by: list[str] | None = None
    """The artifacts that replace an image default, as `Kind/name`."""


class ArtifactReportStatus(KubeModel):
    artifacts: (
        Annotated[
            list[ReportedArtifact],
            Field(json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["kind", "name"]}),
        ]
        | None
    ) = None
    """One entry per artifact that applies to this agent."""
    falco: FalcoProbe | None = None
    """What the agent learned from Falco."""
    image_defaults: ReportedImageDefaults | None = None
    """What this pod's Falco loads from its image besides artifacts, for a Falco with `spec.imageDefaults`
    (the agent's `--image-defaults-dir`); absent otherwise."""


class ArtifactReport(KubeObject):
    api_version: Literal["artifact.falcosecurity.dev/v1alpha1"] = "artifact.falcosecurity.dev/v1alpha1"
    kind: Literal["ArtifactReport"] = "ArtifactReport"
    spec: ArtifactReportSpec = Field(default_factory=ArtifactReportSpec)
    status: ArtifactReportStatus | None = None
