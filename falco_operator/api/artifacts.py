"""The artifact kinds: Rulesfile, Plugin and Config (`artifact.falcosecurity.dev/v1alpha1`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from .base import KubeModel, KubeObject, LabelSelector
from .oci import OCIArtifact, RulesOCIArtifact
from .plain import DEFAULT_PRIORITY, MAX_PRIORITY
from .rollout import Rollout, RolloutStatus
from .schema_types import Conditions, FreeForm, cel, validations

Priority = Annotated[int, Field(ge=0, le=MAX_PRIORITY)]


class RulesConfigMapRef(KubeModel):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    """ConfigMap name, in the same namespace."""
    key: Annotated[str, Field(min_length=1, max_length=253)] = "rules.yaml"
    """Key of the rules document in the ConfigMap."""


class ConfigConfigMapRef(KubeModel):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    """ConfigMap name, in the same namespace."""
    key: Annotated[str, Field(min_length=1, max_length=253)] = "config.yaml"
    """Key of the falco.yaml fragment in the ConfigMap."""


class NodeCounts(KubeModel):
    targeted: int = 0
    """Agents this artifact applies to."""
    installed: int = 0
    """Agents that wrote the current generation."""
    loaded: int = 0
    """Agents whose Falco confirmed loading it."""
    failed: int = 0
    """Agents that could not fetch or validate it."""
    summary: str | None = None
    """`installed/targeted`, for the Nodes printer column."""


class ArtifactStatus(KubeModel):
    observed_generation: int | None = None
    """The generation this status describes."""
    resolved_digest: str | None = None
    """The OCI digest the tag resolved to."""
    signer: str | None = None
    """OCI sources under a signature policy: the fingerprints (`sha256:` of the DER public key) of the keys (and
    the certificate identities of keyless policies) whose cosign signatures every installed agent verified for the
    digest it delivers."""
    nodes: NodeCounts | None = None
    """How many agents are at which stage."""
    conditions: Conditions | None = None
    """ResolvedRefs, Programmed, Valid."""
    rollout: RolloutStatus | None = None
    """The staged rollout, for an artifact with `spec.rollout` (docs/rollout.md)."""


# inlineRules and config are free-form (a string, or a list / an object), which a structural schema cannot type.
# CEL sees such fields only through dyn(); their shape is checked by the agent, which reports it in status.
class RulesfileSpec(KubeModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.ociArtifact) || has(dyn(self).inlineRules) || has(self.configMapRef)",
                "a Rulesfile needs at least one source: ociArtifact, inlineRules or configMapRef",
            ),
            cel(
                "!(has(dyn(self).inlineRules) && has(self.ociArtifact) && has(self.ociArtifact.inline))",
                "set inlineRules or ociArtifact.inline, not both (they are the same thing)",
            ),
        )
    )

    oci_artifact: RulesOCIArtifact | None = None
    """Rules from an OCI artifact (loaded first within this Rulesfile)."""
    inline_rules: FreeForm = None
    """A rules document: a YAML string or a structured list."""
    config_map_ref: RulesConfigMapRef | None = None
    """Rules from a key of a ConfigMap in the same namespace (loaded second)."""
    priority: Priority = DEFAULT_PRIORITY
    """0-99; files of a higher priority load later and override earlier ones."""
    selector: LabelSelector | None = None
    """Matched against the labels of the Node a Falco pod runs on; unset means every node."""
    instance_selector: LabelSelector | None = None
    """Matched against the labels of the Falco; unset means every Falco in the namespace."""
    rollout: Rollout | None = None
    """Roll a new generation out in steps of nodes, each watched for `analysis.duration`, halted and rolled back
    on a failed check (docs/rollout.md); unset: every node gets a change at once."""

    def inline(self) -> str | list[Any] | None:
        """The inline rules, from `inlineRules` or the seed's `ociArtifact.inline`."""
        if self.inline_rules is not None:
            value: str | list[Any] = self.inline_rules
            return value
        return self.oci_artifact.inline if self.oci_artifact else None

    def oci(self) -> OCIArtifact | None:
        """The OCI source, if the `ociArtifact` names one (the seed may use it only for `inline`)."""
        if self.oci_artifact and (self.oci_artifact.reference or self.oci_artifact.image):
            return self.oci_artifact
        return None


class PluginConfig(KubeModel):
    name: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """Plugin name; unset means the Plugin's object name."""
    library_path: Annotated[str, Field(min_length=1)] | None = None
    """Path of the library; unset means the library delivered from `ociArtifact`
    (`/var/lib/falco-artifacts/plugins/<object name>-<first 12 hex digits of its SHA-256>.so`, a new name for each
    new library, so a running Falco loads it), or the image's `/usr/share/falco/plugins/<object name>.so` without
    `ociArtifact`. Without `ociArtifact` a relative path names a library of the Falco image, which Falco looks for
    in `/usr/share/falco/plugins` (`libcontainer.so`). With `ociArtifact`, a bare file name (`libjson.so`), a
    path in `/var/lib/falco-artifacts/plugins`, or one directly in `/usr/share/falco/plugins` (the form of earlier
    versions) gives the delivered library that name in `/var/lib/falco-artifacts/plugins`; a running Falco does
    not load a path again, so a new library there is only loaded when the Falco pod restarts."""
    init_config: FreeForm = None
    """The plugin's `init_config`: any YAML value."""
    open_params: str | None = None
    """The plugin's `open_params`."""


class PluginSpec(KubeModel):
    oci_artifact: OCIArtifact | None = None
    """The plugin library; unset when the library is already in the Falco image."""
    config: PluginConfig | None = None
    """The plugin's entry in Falco's `plugins` list."""
    selector: LabelSelector | None = None
    """Matched against the labels of the Node a Falco pod runs on; unset means every node."""
    instance_selector: LabelSelector | None = None
    """Matched against the labels of the Falco; unset means every Falco in the namespace."""
    rollout: Rollout | None = None
    """Roll a new generation out in steps of nodes, each watched for `analysis.duration`, halted and rolled back
    on a failed check (docs/rollout.md); unset: every node gets a change at once."""


class ConfigSpec(KubeModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(dyn(self).config) || has(self.configMapRef)", "a Config needs config or configMapRef"),
        )
    )

    config: FreeForm = None
    """A falco.yaml fragment: a YAML string or a structured object."""
    config_map_ref: ConfigConfigMapRef | None = None
    """A falco.yaml fragment from a key of a ConfigMap in the same namespace."""
    priority: Priority = DEFAULT_PRIORITY
    """0-99; files of a higher priority load later and override earlier ones."""
    selector: LabelSelector | None = None
    """Matched against the labels of the Node a Falco pod runs on; unset means every node."""
    instance_selector: LabelSelector | None = None
    """Matched against the labels of the Falco; unset means every Falco in the namespace."""
    rollout: Rollout | None = None
    """Roll a new generation out in steps of nodes, each watched for `analysis.duration`, halted and rolled back
    on a failed check (docs/rollout.md); unset: every node gets a change at once."""


class Rulesfile(KubeObject):
    api_version: Literal["artifact.falcosecurity.dev/v1alpha1"] = "artifact.falcosecurity.dev/v1alpha1"
    kind: Literal["Rulesfile"] = "Rulesfile"
    spec: RulesfileSpec
    status: ArtifactStatus | None = None


class Plugin(KubeObject):
    api_version: Literal["artifact.falcosecurity.dev/v1alpha1"] = "artifact.falcosecurity.dev/v1alpha1"
    kind: Literal["Plugin"] = "Plugin"
    spec: PluginSpec = Field(default_factory=PluginSpec)
    status: ArtifactStatus | None = None

    @property
    def plugin_name(self) -> str:
        return (self.spec.config.name if self.spec.config else None) or self.metadata.name or ""


class Config(KubeObject):
    api_version: Literal["artifact.falcosecurity.dev/v1alpha1"] = "artifact.falcosecurity.dev/v1alpha1"
    kind: Literal["Config"] = "Config"
    spec: ConfigSpec
    status: ArtifactStatus | None = None
