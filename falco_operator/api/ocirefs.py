"""OCI references without the models: the patterns the CRDs check, where an artifact is (``OCILocation``), which
Secret holds its credentials, which key verifies it, and the reference and duration parsers.

Pydantic-free, so that the agent (which reads artifacts through ``plain``) never imports the models; ``oci`` keeps
the models of the CRDs and takes these from here.
"""

from __future__ import annotations

import re
from typing import Protocol

from ..records import record

DEFAULT_REGISTRY = "ghcr.io"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_PATTERN = rf"^{_COMPONENT}(?:/{_COMPONENT})*$"
TAG_PATTERN = r"^(?:sha256:[a-f0-9]{64}|[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$"
REFERENCE_PATTERN = (
    rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
DURATION_PATTERN = r"^(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+$"
REGISTRY_HOST_PATTERN = r"^[A-Za-z0-9.-]+(?::[0-9]+)?$"
ENTRY_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
"""A key of a ConfigMap or Secret holding a verification key or a trusted root."""
MIN_REFRESH_INTERVAL = "1m"
MIN_REFRESH_SECONDS = 60.0
"""The shortest ``refreshInterval``: every node of every Falco the artifact applies to asks the registry this often."""
DEFAULT_KEY_ENTRY = "cosign.pub"
DEFAULT_TRUSTED_ROOT_ENTRY = "trusted_root.json"
MAX_IDENTITY_REGEXP = 512
"""The longest ``identityRegexp``: compiled with RE2 (linear time, no backtracking), and bounded in size too."""


@record(frozen=True)
class KeySource:
    """Where one verification key is read from (by name, in the namespace of the object that names it)."""

    kind: str
    """`ConfigMap` or `Secret`."""
    name: str
    key: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name} (key {self.key})"


@record(frozen=True)
class KeylessSource:
    """A keyless policy: the trusted root's ConfigMap (read by name), and the identity and issuer required."""

    name: str
    key: str
    identity: str | None
    identity_regexp: str | None
    issuer: str
    kind: str = "ConfigMap"

    def __str__(self) -> str:
        return f"ConfigMap {self.name} (key {self.key})"

    @property
    def wanted(self) -> str:
        """The identity required, for messages."""
        who = self.identity if self.identity is not None else f"matching {self.identity_regexp!r}"
        return f"identity {who} from issuer {self.issuer}"


@record(frozen=True)
class OCILocation:
    registry: str
    repository: str
    tag: str | None
    digest: str | None
    plain_http: bool = False
    insecure_skip_verify: bool = False

    @property
    def reference(self) -> str:
        suffix = f"@{self.digest}" if self.digest else f":{self.tag or DEFAULT_TAG}"
        return f"{self.registry}/{self.repository}{suffix}"


@record(frozen=True)
class CredentialsRef:
    secret_name: str
    username_key: str
    password_key: str


def parse_reference(reference: str) -> tuple[str, str, str | None, str | None]:
    """Split `host[:port]/repo[:tag][@digest]` into (host, repository, tag, digest).

    The first component is a host when it has a dot or a port or is `localhost`; otherwise the registry is
    ghcr.io. Without a tag or digest the tag is `latest`.
    """
    if not re.match(REFERENCE_PATTERN, reference):
        raise ValueError(f"invalid OCI reference {reference!r}")
    name, _, digest = reference.partition("@")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = DEFAULT_REGISTRY, name
    repository, _, tag = path.partition(":")
    return host, repository, tag or (None if digest else DEFAULT_TAG), digest or None


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration (``90s``, ``1h30m``, ``1.5h``)."""
    if not re.match(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}")
    return sum(
        float(number) * _DURATION_UNITS[unit] for number, unit in re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", text)
    )


# What the models (``oci``) and the plain classes (``plain``) of an ``ociArtifact`` have in common, read-only: the
# functions below give both the same answers.


class _ImageFields(Protocol):
    @property
    def repository(self) -> str: ...
    @property
    def tag(self) -> str: ...


class _SecretRefFields(Protocol):
    @property
    def name(self) -> str: ...


class _AuthFields(Protocol):
    @property
    def secret_ref(self) -> _SecretRefFields: ...


class _TLSFields(Protocol):
    @property
    def insecure_skip_verify(self) -> bool | None: ...


class _RegistryFields(Protocol):
    @property
    def name(self) -> str | None: ...
    @property
    def plain_http(self) -> bool | None: ...
    @property
    def tls(self) -> _TLSFields | None: ...
    @property
    def auth(self) -> _AuthFields | None: ...


class _PullSecretFields(Protocol):
    @property
    def secret_name(self) -> str: ...
    @property
    def username_key(self) -> str: ...
    @property
    def password_key(self) -> str: ...


class OCISourceFields(Protocol):
    @property
    def reference(self) -> str | None: ...
    @property
    def image(self) -> _ImageFields | None: ...
    @property
    def registry(self) -> _RegistryFields | None: ...
    @property
    def pull_secret(self) -> _PullSecretFields | None: ...
    @property
    def refresh_interval(self) -> str | None: ...


def oci_location(source: OCISourceFields) -> OCILocation:
    """The registry, repository and tag or digest, whichever form the user wrote."""
    registry = source.registry
    plain_http = bool(registry and registry.plain_http)
    insecure = bool(registry and registry.tls and registry.tls.insecure_skip_verify)
    if source.reference:
        host, repository, tag, digest = parse_reference(source.reference)
        return OCILocation(host, repository, tag, digest, plain_http, insecure)
    if source.image is None:
        raise ValueError("ociArtifact has neither reference nor image")
    image_tag = source.image.tag
    tag, digest = (None, image_tag) if image_tag.startswith("sha256:") else (image_tag, None)
    host = (registry.name if registry else None) or DEFAULT_REGISTRY
    return OCILocation(host, source.image.repository, tag, digest, plain_http, insecure)


def oci_refresh_seconds(source: OCISourceFields, floor: float = MIN_REFRESH_SECONDS) -> float | None:
    """``refreshInterval`` in seconds, never under ``floor`` (None: resolve once per spec change). The CRD refuses
    shorter intervals; objects stored before it did are held to the floor here."""
    return max(floor, parse_duration(source.refresh_interval)) if source.refresh_interval else None


def oci_credentials(source: OCISourceFields) -> CredentialsRef | None:
    """The Secret and keys holding the registry's credentials, if any."""
    if source.pull_secret:
        secret = source.pull_secret
        return CredentialsRef(secret.secret_name, secret.username_key, secret.password_key)
    if source.registry and source.registry.auth:
        return CredentialsRef(source.registry.auth.secret_ref.name, "username", "password")
    return None


class _EntryRefFields(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def key(self) -> str: ...


class _SignatureKeyFields(Protocol):
    @property
    def config_map_ref(self) -> _EntryRefFields | None: ...
    @property
    def secret_ref(self) -> _EntryRefFields | None: ...


class _TrustedRootFields(Protocol):
    @property
    def config_map_ref(self) -> _EntryRefFields: ...


class _KeylessFields(Protocol):
    @property
    def identity(self) -> str | None: ...
    @property
    def identity_regexp(self) -> str | None: ...
    @property
    def issuer(self) -> str: ...
    @property
    def trusted_root(self) -> _TrustedRootFields: ...


def verification_source(key: _SignatureKeyFields | None, keyless: _KeylessFields | None) -> KeySource | KeylessSource:
    """What a verification policy verifies with, and where it is read from (the CRD requires exactly one)."""
    if keyless is not None:
        root = keyless.trusted_root.config_map_ref
        return KeylessSource(root.name, root.key, keyless.identity, keyless.identity_regexp, keyless.issuer)
    assert key is not None  # the CRD requires exactly one
    ref = key.config_map_ref or key.secret_ref
    assert ref is not None  # the CRD requires exactly one
    return KeySource("ConfigMap" if key.config_map_ref else "Secret", ref.name, ref.key)
