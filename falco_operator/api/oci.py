"""OCI artifact references in both accepted shapes, and their normalization (the models; the patterns, parsers and
locations are in ``ocirefs``, without pydantic)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from .base import KubeModel
from .ocirefs import (
    DEFAULT_KEY_ENTRY,
    DEFAULT_TAG,
    DEFAULT_TRUSTED_ROOT_ENTRY,
    DURATION_PATTERN,
    ENTRY_KEY_PATTERN,
    MAX_IDENTITY_REGEXP,
    MIN_REFRESH_INTERVAL,
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
from .schema_types import cel, validations


class ImageRef(KubeModel):
    repository: Annotated[str, Field(pattern=REPOSITORY_PATTERN, max_length=255)]
    """Repository path in the registry, e.g. `falcosecurity/rules/falco-rules`."""
    tag: Annotated[str, Field(pattern=TAG_PATTERN, max_length=135)] = DEFAULT_TAG
    """A tag, or a digest when it starts with `sha256:`."""


class SecretRef(KubeModel):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of the Secret."""


class RegistryAuth(KubeModel):
    secret_ref: SecretRef
    """Secret in the same namespace: `username`/`password` keys, or a `kubernetes.io/dockerconfigjson`."""


class RegistryTLS(KubeModel):
    insecure_skip_verify: bool | None = None
    """Accept any certificate the registry presents (testing only)."""


class Registry(KubeModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!(has(self.plainHTTP) && self.plainHTTP && has(self.tls))",
                "plainHTTP and tls are mutually exclusive: a plain-HTTP registry has no TLS settings",
            )
        )
    )

    name: Annotated[str, Field(pattern=REGISTRY_HOST_PATTERN, max_length=253)] | None = None
    """Registry host (and port); unset means ghcr.io."""
    auth: RegistryAuth | None = None
    """Credentials for the registry."""
    plain_http: bool | None = Field(default=None, alias="plainHTTP")
    """Talk to the registry over plain HTTP (a local registry)."""
    tls: RegistryTLS | None = None
    """TLS settings for the registry connection."""


class PullSecret(KubeModel):
    """The seed form of registry credentials."""

    secret_name: Annotated[str, Field(min_length=1, max_length=253)]
    """Secret in the same namespace that holds the credentials."""
    username_key: str = "username"
    """Key of the user name in the Secret."""
    password_key: str = "password"
    """Key of the password in the Secret."""


class KeyEntryRef(KubeModel):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of the object, in the artifact's (or the Falco's) namespace."""
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=ENTRY_KEY_PATTERN)] = DEFAULT_KEY_ENTRY
    """Key of the PEM public key in the object; unset means `cosign.pub` (the file `cosign generate-key-pair`
    writes)."""


class SignatureKey(KubeModel):
    """A cosign public key (PEM, ECDSA P-256 or Ed25519), from a ConfigMap or a Secret: exactly one."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.secretRef) != has(self.configMapRef)",
                "set exactly one of secretRef and configMapRef",
            )
        )
    )

    config_map_ref: KeyEntryRef | None = None
    """A ConfigMap that holds the public key (a public key is no secret: the simplest choice)."""
    secret_ref: KeyEntryRef | None = None
    """A Secret that holds the public key; agents are granted it only when it is labelled
    `artifact.falcosecurity.dev/verification-key: "true"` (or is a pull secret)."""


class TrustedRootRef(KubeModel):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of the ConfigMap, in the artifact's (or the Falco's) namespace."""
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=ENTRY_KEY_PATTERN)] = DEFAULT_TRUSTED_ROOT_ENTRY
    """Key of the Sigstore trusted root (JSON) in the ConfigMap; unset means `trusted_root.json`."""


class TrustedRoot(KubeModel):
    config_map_ref: TrustedRootRef
    """A ConfigMap holding a Sigstore `trusted_root.json`: the certificate authorities (Fulcio) whose certificates
    are accepted, and the transparency logs (Rekor) whose entries are checked."""


class KeylessVerification(KubeModel):
    """A cosign keyless signature: a certificate issued by a CA of the trusted root to this identity, authenticated
    by this OIDC issuer; verified offline (the transparency-log proof comes from the signature bundle)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.identity) != has(self.identityRegexp)",
                "set exactly one of identity and identityRegexp",
            )
        )
    )

    identity: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    """The certificate's subject alternative name, exactly: an email address or a URI (a CI workflow's)."""
    identity_regexp: Annotated[str, Field(min_length=1, max_length=MAX_IDENTITY_REGEXP)] | None = None
    """An RE2 regular expression the whole subject alternative name must match (anchored at both ends)."""
    issuer: Annotated[str, Field(min_length=1, max_length=1024)]
    """The OIDC issuer the certificate records (Fulcio's issuer extension), exactly, e.g.
    `https://token.actions.githubusercontent.com`."""
    trusted_root: TrustedRoot
    """The trusted root to verify against."""


class Verification(KubeModel):
    """Who must have signed an OCI artifact before any node loads it (cosign's signature, verified offline by the
    digest the reference resolves to): a public key, or a keyless identity; exactly one."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.key) != has(self.keyless)", "set exactly one of key and keyless"),
        )
    )

    key: SignatureKey | None = None
    """The public key whose signature the artifact's digest must carry."""
    keyless: KeylessVerification | None = None
    """The certificate identity and issuer whose keyless signature the artifact's digest must carry."""

    def key_source(self) -> KeySource | KeylessSource:
        """What to verify with, and where it is read from."""
        return verification_source(self.key, self.keyless)


_OCI_RULES = (
    cel(
        "!(has(self.reference) && has(self.image))",
        "set either reference (one string) or image with registry, not both",
    ),
    cel(
        "!(has(self.reference) && has(self.registry) && has(self.registry.name))",
        "registry.name cannot be combined with reference: the reference names its registry",
    ),
    cel(
        "!(has(self.pullSecret) && has(self.registry) && has(self.registry.auth))",
        "set either pullSecret or registry.auth, not both",
    ),
)


class OCIArtifact(KubeModel):
    """Where an artifact comes from: `image` + `registry`, or the seed's `reference` + `pullSecret`."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            *_OCI_RULES,
            cel("has(self.reference) || has(self.image)", "ociArtifact needs a reference or an image"),
        )
    )

    image: ImageRef | None = None
    """Repository and tag (or digest) in `registry`."""
    registry: Registry | None = None
    """Registry host, credentials and transport settings."""
    reference: Annotated[str, Field(pattern=REFERENCE_PATTERN, max_length=1024)] | None = None
    """Seed form: `host/repository:tag` or `host/repository@sha256:...` in one string."""
    pull_secret: PullSecret | None = None
    """Seed form of credentials, with `reference`."""
    refresh_interval: Annotated[str, Field(pattern=DURATION_PATTERN, max_length=64, json_schema_extra=validations(cel(
        f"duration(self) >= duration('{MIN_REFRESH_INTERVAL}')",
        f"refreshInterval must be at least {MIN_REFRESH_INTERVAL} (every node asks the registry this often), "
        "for example 5m or 1h",
    )))] | None = None  # fmt: skip
    """Re-resolve the tag this often (at least 1m) and follow it when it moves; unset resolves once per spec
    change."""
    verify: Verification | None = None
    """Load only what this key (or keyless identity) signed: the digest the reference resolves to must carry its
    cosign signature (`SignatureMissing`, `SignatureInvalid` otherwise; the last good files stay). A Falco's
    `spec.artifactVerification` applies as well: both must pass."""

    def location(self) -> OCILocation:
        """The registry, repository and tag or digest, whichever form the user wrote."""
        return oci_location(self)

    def refresh_seconds(self, floor: float = MIN_REFRESH_SECONDS) -> float | None:
        """``refreshInterval`` in seconds, never under ``floor`` (None: resolve once per spec change)."""
        return oci_refresh_seconds(self, floor)

    def credentials(self) -> CredentialsRef | None:
        return oci_credentials(self)


class RulesOCIArtifact(OCIArtifact):
    """The Rulesfile's `ociArtifact`, which also accepts the seed's `inline` rules."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            *_OCI_RULES,
            cel(
                "has(self.reference) || has(self.image) || has(self.inline)",
                "ociArtifact needs a reference, an image or inline rules",
            ),
        )
    )

    inline: str | None = None
    """Seed form of `spec.inlineRules`."""
