"""The artifact kinds (Rulesfile, Plugin, Config) as plain typed classes: what the agent and the shared artifact code
read, without pydantic.

Each class mirrors the model of the same name (``artifacts``, ``oci``, ``rollout``, ``base``): the same attributes,
defaults and checks (``wire``), so an object reads the same here as with the model, and is refused where the model
refuses it (tests/unit/test_plain_parity.py holds the two readings equal). The models stay the source of the CRDs;
these are what a pass of the agent reads, once per ``resourceVersion``. Instances are never changed after reading
(``dataclasses.replace`` makes a changed copy).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, ClassVar, Literal

from ..records import record
from .ocirefs import (
    DEFAULT_KEY_ENTRY,
    DEFAULT_TAG,
    DEFAULT_TRUSTED_ROOT_ENTRY,
    DURATION_PATTERN,
    ENTRY_KEY_PATTERN,
    MAX_IDENTITY_REGEXP,
    MIN_REFRESH_SECONDS,
    REFERENCE_PATTERN,
    REGISTRY_HOST_PATTERN,
    REPOSITORY_PATTERN,
    TAG_PATTERN,
    CredentialsRef,
    KeylessSource,
    KeySource,
    OCILocation,
    oci_credentials,
    oci_location,
    oci_refresh_seconds,
    verification_source,
)
from .selection import selector_matches
from .wire import REQUIRED, Fields, Wire

ARTIFACT_API_VERSION = "artifact.falcosecurity.dev/v1alpha1"
DEFAULT_PRIORITY = 50
MAX_PRIORITY = 99
NAME_LENGTH = 253

ROLLOUT_ANNOTATION = "artifact.falcosecurity.dev/rollout"
"""``pause`` holds a rollout at its step (remove the annotation to resume); ``abort`` sends the step's nodes back
to the stable generation for good (a new edit starts a new rollout)."""
SNAPSHOT_KEY = "artifact.json"
"""The key of a snapshot ConfigMap: the stable generation as an artifact object, its sources pinned."""
SNAPSHOT_CONTENT_KEY = "configmap-content"
"""The key of a snapshot ConfigMap (``binaryData``) holding the bytes the stable generation read from its
ConfigMap source, when it has one."""
MAX_STEPS = 10
MAX_STEP_NODES = 100000
DEFAULT_ANALYSIS_DURATION = "1m"
MIN_ANALYSIS_DURATION = "10s"
MAX_ANALYSIS_DURATION = "24h"
MAX_RATE = 1e9
MAX_CPU = 1000

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
OPERATORS: tuple[Operator, ...] = ("In", "NotIn", "Exists", "DoesNotExist")
ConditionStatus = Literal["True", "False", "Unknown"]
CONDITION_STATUSES: tuple[ConditionStatus, ...] = ("True", "False", "Unknown")
RolloutPhase = Literal["Progressing", "Paused", "Halted", "Aborted", "Succeeded"]
ROLLOUT_PHASES: tuple[RolloutPhase, ...] = ("Progressing", "Paused", "Halted", "Aborted", "Succeeded")


def _name(fields: Fields, key: str = "name") -> str:
    text: str = fields.text(key, REQUIRED, min_length=1, max_length=NAME_LENGTH)
    return text


# --- metadata and selectors ---------------------------------------------------------------------------------------


@record(frozen=True, slots=True, kw_only=True)
class ObjectMeta(Wire):
    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generation: int | None = None
    uid: str | None = None
    resource_version: str | None = None

    @classmethod
    def read(cls, fields: Fields) -> ObjectMeta:
        return cls(name=fields.text("name"), namespace=fields.text("namespace"), labels=fields.string_map("labels"),
                   annotations=fields.string_map("annotations"), generation=fields.integer("generation"),
                   uid=fields.text("uid"), resource_version=fields.text("resourceVersion"))  # fmt: skip


@record(frozen=True, slots=True, kw_only=True)
class LabelSelectorRequirement(Wire):
    key: str
    operator: Operator
    values: tuple[str, ...] | None = None

    @classmethod
    def read(cls, fields: Fields) -> LabelSelectorRequirement:
        return cls(key=fields.text("key", REQUIRED), operator=fields.choice("operator", OPERATORS, REQUIRED),
                   values=fields.strings("values"))  # fmt: skip


@record(frozen=True, slots=True, kw_only=True)
class LabelSelector(Wire):
    """`metav1.LabelSelector`: the requirements are ANDed; an empty selector matches everything."""

    match_labels: dict[str, str] | None = None
    match_expressions: tuple[LabelSelectorRequirement, ...] | None = None

    @classmethod
    def read(cls, fields: Fields) -> LabelSelector:
        return cls(match_labels=fields.string_map("matchLabels"),
                   match_expressions=fields.models("matchExpressions", LabelSelectorRequirement.read))  # fmt: skip

    @classmethod
    def from_wire(cls, raw: object) -> LabelSelector:
        return cls.read(Fields(raw, "selector"))

    def matches(self, labels: dict[str, str]) -> bool:
        return selector_matches(self.match_labels, self.match_expressions, labels)


# --- status -------------------------------------------------------------------------------------------------------


@record(frozen=True, slots=True, kw_only=True)
class Condition(Wire):
    type: str
    status: ConditionStatus
    observed_generation: int | None = None
    last_transition_time: str
    reason: str
    message: str

    @classmethod
    def read(cls, fields: Fields) -> Condition:
        return cls(type=fields.text("type", REQUIRED, max_length=316),
                   status=fields.choice("status", CONDITION_STATUSES, REQUIRED),
                   observed_generation=fields.integer("observedGeneration", ge=0),
                   last_transition_time=fields.text("lastTransitionTime", REQUIRED),
                   reason=fields.text("reason", REQUIRED, min_length=1, max_length=1024),
                   message=fields.text("message", REQUIRED, max_length=32768))  # fmt: skip


@record(frozen=True, slots=True, kw_only=True)
class NodeCounts(Wire):
    targeted: int = 0
    installed: int = 0
    loaded: int = 0
    failed: int = 0
    summary: str | None = None

    @classmethod
    def read(cls, fields: Fields) -> NodeCounts:
        return cls(targeted=fields.integer("targeted", 0), installed=fields.integer("installed", 0),
                   loaded=fields.integer("loaded", 0), failed=fields.integer("failed", 0),
                   summary=fields.text("summary"))  # fmt: skip


@record(frozen=True, slots=True, kw_only=True)
class RolloutStatus(Wire):
    phase: RolloutPhase
    stable_generation: int | None = None
    candidate_generation: int | None = None
    step: int | None = None
    steps: int | None = None
    nodes: tuple[str, ...] | None = None
    step_started_at: str | None = None
    snapshot: str | None = None
    message: str | None = None

    @classmethod
    def read(cls, fields: Fields) -> RolloutStatus:
        return cls(phase=fields.choice("phase", ROLLOUT_PHASES, REQUIRED),
                   stable_generation=fields.integer("stableGeneration"),
                   candidate_generation=fields.integer("candidateGeneration"), step=fields.integer("step"),
                   steps=fields.integer("steps"), nodes=fields.strings("nodes"),
                   step_started_at=fields.text("stepStartedAt"), snapshot=fields.text("snapshot"),
                   message=fields.text("message"))  # fmt: skip


@record(frozen=True, slots=True, kw_only=True)
class ArtifactStatus(Wire):
    observed_generation: int | None = None
    resolved_digest: str | None = None
    signer: str | None = None
    nodes: NodeCounts | None = None
    conditions: tuple[Condition, ...] | None = None
    rollout: RolloutStatus | None = None

    @classmethod
    def read(cls, fields: Fields) -> ArtifactStatus:
        return cls(observed_generation=fields.integer("observedGeneration"),
                   resolved_digest=fields.text("resolvedDigest"), signer=fields.text("signer"),
                   nodes=fields.model("nodes", NodeCounts.read),
                   conditions=fields.models("conditions", Condition.read),
                   rollout=fields.model("rollout", RolloutStatus.read))  # fmt: skip


# --- rollout ------------------------------------------------------------------------------------------------------


@record(frozen=True, slots=True, kw_only=True)
class RolloutStep(Wire):
    nodes: int | None = None
    percent: int | None = None

    @classmethod
    def read(cls, fields: Fields) -> RolloutStep:
        return cls(nodes=fields.integer("nodes", ge=1, le=MAX_STEP_NODES),
                   percent=fields.integer("percent", ge=1, le=100))  # fmt: skip


@record(frozen=True, slots=True, kw_only=True)
class RolloutAnalysis(Wire):
    duration: str = DEFAULT_ANALYSIS_DURATION
    max_rule_rate: float | None = None
    max_total_rate: float | None = None
    max_drop_rate: float | None = None
    max_cpu: float | None = None

    @classmethod
    def read(cls, fields: Fields) -> RolloutAnalysis:
        return cls(duration=fields.text("duration", DEFAULT_ANALYSIS_DURATION, pattern=DURATION_PATTERN,
                                        max_length=64),
                   max_rule_rate=fields.number("maxRuleRate", ge=0, le=MAX_RATE),
                   max_total_rate=fields.number("maxTotalRate", ge=0, le=MAX_RATE),
                   max_drop_rate=fields.number("maxDropRate", ge=0, le=MAX_RATE),
                   max_cpu=fields.number("maxCpu", ge=0, le=MAX_CPU))  # fmt: skip


@record(frozen=True, slots=True, kw_only=True)
class Rollout(Wire):
    steps: tuple[RolloutStep, ...]
    analysis: RolloutAnalysis = field(default_factory=RolloutAnalysis)

    @classmethod
    def read(cls, fields: Fields) -> Rollout:
        return cls(steps=fields.required_models("steps", RolloutStep.read, min_items=1, max_items=MAX_STEPS),
                   analysis=fields.model("analysis", RolloutAnalysis.read, RolloutAnalysis))  # fmt: skip


# --- OCI sources --------------------------------------------------------------------------------------------------


@record(frozen=True, slots=True, kw_only=True)
class ImageRef(Wire):
    repository: str
    tag: str = DEFAULT_TAG

    @classmethod
    def read(cls, fields: Fields) -> ImageRef:
        return cls(repository=fields.text("repository", REQUIRED, pattern=REPOSITORY_PATTERN, max_length=255),
                   tag=fields.text("tag", DEFAULT_TAG, pattern=TAG_PATTERN, max_length=135))  # fmt: skip


@record(frozen=True, slots=True, kw_only=True)
class SecretRef(Wire):
    name: str

    @classmethod
    def read(cls, fields: Fields) -> SecretRef:
        return cls(name=_name(fields))


@record(frozen=True, slots=True, kw_only=True)
class RegistryAuth(Wire):
    secret_ref: SecretRef

    @classmethod
    def read(cls, fields: Fields) -> RegistryAuth:
        return cls(secret_ref=fields.required_model("secretRef", SecretRef.read))


@record(frozen=True, slots=True, kw_only=True)
class RegistryTLS(Wire):
    insecure_skip_verify: bool | None = None

    @classmethod
    def read(cls, fields: Fields) -> RegistryTLS:
        return cls(insecure_skip_verify=fields.flag("insecureSkipVerify"))


@record(frozen=True, slots=True, kw_only=True)
class Registry(Wire):
    WIRE_NAMES: ClassVar[dict[str, str]] = {"plain_http": "plainHTTP"}
    name: str | None = None
    auth: RegistryAuth | None = None
    plain_http: bool | None = None
    tls: RegistryTLS | None = None

    @classmethod
    def read(cls, fields: Fields) -> Registry:
        return cls(name=fields.text("name", pattern=REGISTRY_HOST_PATTERN, max_length=NAME_LENGTH),
                   auth=fields.model("auth", RegistryAuth.read), plain_http=fields.flag("plainHTTP"),
                   tls=fields.model("tls", RegistryTLS.read))  # fmt: skip


@record(frozen=True, slots=True, kw_only=True)
class PullSecret(Wire):
    secret_name: str
    username_key: str = "username"
    password_key: str = "password"

    @classmethod
    def read(cls, fields: Fields) -> PullSecret:
        return cls(secret_name=_name(fields, "secretName"), username_key=fields.text("usernameKey", "username"),
                   password_key=fields.text("passwordKey", "password"))  # fmt: skip


def _entry_key(fields: Fields, default: str) -> str:
    key: str = fields.text("key", default, min_length=1, max_length=NAME_LENGTH, pattern=ENTRY_KEY_PATTERN)
    return key


@record(frozen=True, slots=True, kw_only=True)
class KeyEntryRef(Wire):
    name: str
    key: str = DEFAULT_KEY_ENTRY

    @classmethod
    def read(cls, fields: Fields) -> KeyEntryRef:
        return cls(name=_name(fields), key=_entry_key(fields, DEFAULT_KEY_ENTRY))


@record(frozen=True, slots=True, kw_only=True)
class SignatureKey(Wire):
    config_map_ref: KeyEntryRef | None = None
    secret_ref: KeyEntryRef | None = None

    @classmethod
    def read(cls, fields: Fields) -> SignatureKey:
        return cls(config_map_ref=fields.model("configMapRef", KeyEntryRef.read),
                   secret_ref=fields.model("secretRef", KeyEntryRef.read))  # fmt: skip


@record(frozen=True, slots=True, kw_only=True)
class TrustedRootRef(Wire):
    name: str
    key: str = DEFAULT_TRUSTED_ROOT_ENTRY

    @classmethod
    def read(cls, fields: Fields) -> TrustedRootRef:
        return cls(name=_name(fields), key=_entry_key(fields, DEFAULT_TRUSTED_ROOT_ENTRY))


@record(frozen=True, slots=True, kw_only=True)
class TrustedRoot(Wire):
    config_map_ref: TrustedRootRef

    @classmethod
    def read(cls, fields: Fields) -> TrustedRoot:
        return cls(config_map_ref=fields.required_model("configMapRef", TrustedRootRef.read))


@record(frozen=True, slots=True, kw_only=True)
class KeylessVerification(Wire):
    identity: str | None = None
    identity_regexp: str | None = None
    issuer: str
    trusted_root: TrustedRoot

    @classmethod
    def read(cls, fields: Fields) -> KeylessVerification:
        return cls(identity=fields.text("identity", min_length=1, max_length=1024),
                   identity_regexp=fields.text("identityRegexp", min_length=1, max_length=MAX_IDENTITY_REGEXP),
                   issuer=fields.text("issuer", REQUIRED, min_length=1, max_length=1024),
                   trusted_root=fields.required_model("trustedRoot", TrustedRoot.read))  # fmt: skip


@record(frozen=True, slots=True, kw_only=True)
class Verification(Wire):
    key: SignatureKey | None = None
    keyless: KeylessVerification | None = None

    @classmethod
    def read(cls, fields: Fields) -> Verification:
        return cls(
            key=fields.model("key", SignatureKey.read), keyless=fields.model("keyless", KeylessVerification.read)
        )

    @classmethod
    def from_wire(cls, raw: object) -> Verification:
        return cls.read(Fields(raw, "verification"))

    def key_source(self) -> KeySource | KeylessSource:
        """What to verify with, and where it is read from."""
        return verification_source(self.key, self.keyless)


@record(frozen=True, slots=True, kw_only=True)
class OCIArtifact(Wire):
    """Where an artifact comes from: `image` + `registry`, or the seed's `reference` + `pullSecret`."""

    image: ImageRef | None = None
    registry: Registry | None = None
    reference: str | None = None
    pull_secret: PullSecret | None = None
    refresh_interval: str | None = None
    verify: Verification | None = None

    @staticmethod
    def _fields(fields: Fields) -> dict[str, Any]:
        return {"image": fields.model("image", ImageRef.read), "registry": fields.model("registry", Registry.read),
                "reference": fields.text("reference", pattern=REFERENCE_PATTERN, max_length=1024),
                "pull_secret": fields.model("pullSecret", PullSecret.read),
                "refresh_interval": fields.text("refreshInterval", pattern=DURATION_PATTERN, max_length=64),
                "verify": fields.model("verify", Verification.read)}  # fmt: skip

    @classmethod
    def read(cls, fields: Fields) -> OCIArtifact:
        return cls(**cls._fields(fields))

    def location(self) -> OCILocation:
        """The registry, repository and tag or digest, whichever form the user wrote."""
        return oci_location(self)

    def refresh_seconds(self, floor: float = MIN_REFRESH_SECONDS) -> float | None:
        """``refreshInterval`` in seconds, never under ``floor`` (None: resolve once per spec change)."""
        return oci_refresh_seconds(self, floor)

    def credentials(self) -> CredentialsRef | None:
        return oci_credentials(self)


@record(frozen=True, slots=True, kw_only=True)
class RulesOCIArtifact(OCIArtifact):
    """The Rulesfile's `ociArtifact`, which also accepts the seed's `inline` rules."""

    inline: str | None = None

    @classmethod
    def read(cls, fields: Fields) -> RulesOCIArtifact:
        return cls(**cls._fields(fields), inline=fields.text("inline"))


# --- the kinds ----------------------------------------------------------------------------------------------------


@record(frozen=True, slots=True, kw_only=True)
class RulesConfigMapRef(Wire):
    name: str
    key: str = "rules.yaml"

    @classmethod
    def read(cls, fields: Fields) -> RulesConfigMapRef:
        return cls(name=_name(fields), key=fields.text("key", "rules.yaml", min_length=1, max_length=NAME_LENGTH))


@record(frozen=True, slots=True, kw_only=True)
class ConfigConfigMapRef(Wire):
    name: str
    key: str = "config.yaml"

    @classmethod
    def read(cls, fields: Fields) -> ConfigConfigMapRef:
        return cls(name=_name(fields), key=fields.text("key", "config.yaml", min_length=1, max_length=NAME_LENGTH))


def _targeting(fields: Fields) -> dict[str, Any]:
    """The fields every artifact spec has: who it is for, and how a new generation rolls out."""
    return {"selector": fields.model("selector", LabelSelector.read),
            "instance_selector": fields.model("instanceSelector", LabelSelector.read),
            "rollout": fields.model("rollout", Rollout.read)}  # fmt: skip


def _priority(fields: Fields) -> int:
    priority: int = fields.integer("priority", DEFAULT_PRIORITY, ge=0, le=MAX_PRIORITY)
    return priority


@record(frozen=True, slots=True, kw_only=True)
class RulesfileSpec(Wire):
    oci_artifact: RulesOCIArtifact | None = None
    inline_rules: Any = None
    config_map_ref: RulesConfigMapRef | None = None
    priority: int = DEFAULT_PRIORITY
    selector: LabelSelector | None = None
    instance_selector: LabelSelector | None = None
    rollout: Rollout | None = None

    @classmethod
    def read(cls, fields: Fields) -> RulesfileSpec:
        return cls(oci_artifact=fields.model("ociArtifact", RulesOCIArtifact.read),
                   inline_rules=fields.anything("inlineRules"),
                   config_map_ref=fields.model("configMapRef", RulesConfigMapRef.read), priority=_priority(fields),
                   **_targeting(fields))  # fmt: skip

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


@record(frozen=True, slots=True, kw_only=True)
class PluginConfig(Wire):
    name: str | None = None
    library_path: str | None = None
    init_config: Any = None
    open_params: str | None = None

    @classmethod
    def read(cls, fields: Fields) -> PluginConfig:
        return cls(name=fields.text("name", min_length=1, max_length=NAME_LENGTH),
                   library_path=fields.text("libraryPath", min_length=1), init_config=fields.anything("initConfig"),
                   open_params=fields.text("openParams"))  # fmt: skip


@record(frozen=True, slots=True, kw_only=True)
class PluginSpec(Wire):
    oci_artifact: OCIArtifact | None = None
    config: PluginConfig | None = None
    selector: LabelSelector | None = None
    instance_selector: LabelSelector | None = None
    rollout: Rollout | None = None

    @classmethod
    def read(cls, fields: Fields) -> PluginSpec:
        return cls(oci_artifact=fields.model("ociArtifact", OCIArtifact.read),
                   config=fields.model("config", PluginConfig.read), **_targeting(fields))  # fmt: skip


@record(frozen=True, slots=True, kw_only=True)
class ConfigSpec(Wire):
    config: Any = None
    config_map_ref: ConfigConfigMapRef | None = None
    priority: int = DEFAULT_PRIORITY
    selector: LabelSelector | None = None
    instance_selector: LabelSelector | None = None
    rollout: Rollout | None = None

    @classmethod
    def read(cls, fields: Fields) -> ConfigSpec:
        return cls(config=fields.anything("config"),
                   config_map_ref=fields.model("configMapRef", ConfigConfigMapRef.read), priority=_priority(fields),
                   **_targeting(fields))  # fmt: skip


def _envelope(fields: Fields, kind: str) -> dict[str, Any]:
    return {"api_version": fields.choice("apiVersion", (ARTIFACT_API_VERSION,), ARTIFACT_API_VERSION),
            "kind": fields.choice("kind", (kind,), kind),
            "metadata": fields.model("metadata", ObjectMeta.read, ObjectMeta),
            "status": fields.model("status", ArtifactStatus.read)}  # fmt: skip


@record(frozen=True, slots=True, kw_only=True)
class Rulesfile(Wire):
    api_version: str = ARTIFACT_API_VERSION
    kind: Literal["Rulesfile"] = "Rulesfile"
    metadata: ObjectMeta = field(default_factory=ObjectMeta)
    spec: RulesfileSpec
    status: ArtifactStatus | None = None

    @classmethod
    def from_wire(cls, raw: object) -> Rulesfile:
        fields = Fields(raw, "Rulesfile")
        return cls(spec=fields.required_model("spec", RulesfileSpec.read), **_envelope(fields, "Rulesfile"))


@record(frozen=True, slots=True, kw_only=True)
class Plugin(Wire):
    api_version: str = ARTIFACT_API_VERSION
    kind: Literal["Plugin"] = "Plugin"
    metadata: ObjectMeta = field(default_factory=ObjectMeta)
    spec: PluginSpec = field(default_factory=PluginSpec)
    status: ArtifactStatus | None = None

    @classmethod
    def from_wire(cls, raw: object) -> Plugin:
        fields = Fields(raw, "Plugin")
        return cls(spec=fields.model("spec", PluginSpec.read, PluginSpec), **_envelope(fields, "Plugin"))

    @property
    def plugin_name(self) -> str:
        return (self.spec.config.name if self.spec.config else None) or self.metadata.name or ""


@record(frozen=True, slots=True, kw_only=True)
class Config(Wire):
    api_version: str = ARTIFACT_API_VERSION
    kind: Literal["Config"] = "Config"
    metadata: ObjectMeta = field(default_factory=ObjectMeta)
    spec: ConfigSpec
    status: ArtifactStatus | None = None

    @classmethod
    def from_wire(cls, raw: object) -> Config:
        fields = Fields(raw, "Config")
        return cls(spec=fields.required_model("spec", ConfigSpec.read), **_envelope(fields, "Config"))
