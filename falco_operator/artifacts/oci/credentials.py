"""Registry credentials from a Kubernetes Secret, and which registry hosts may receive them.

Three forms: a Secret with user name and password keys (``username``/``password``, or the seed's custom key names),
a ``kubernetes.io/basic-auth`` Secret (the same keys), and a ``kubernetes.io/dockerconfigjson`` Secret whose
``auths`` are matched against the registry host the way docker matches them (scheme and path of the key ignored;
the Docker Hub aliases are one host). Credentials go only to a registry the Secret itself names: a
dockerconfigjson Secret by its ``auths`` keys, the others by the ``artifact.falcosecurity.dev/registry-hosts``
annotation, set by whoever may edit the Secret. An unannotated username/password Secret goes nowhere: the artifact
names the registry, and whoever may write an artifact must not choose where a Secret's values are sent.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ...records import record

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
BASIC_AUTH = "kubernetes.io/basic-auth"
PULL_SECRET_LABEL = "artifact.falcosecurity.dev/pull-secret"
VERIFICATION_KEY_LABEL = "artifact.falcosecurity.dev/verification-key"
"""A Secret labelled so holds a signature verification key (a public key): the operator grants agents `get` on it."""
REGISTRY_HOSTS_ANNOTATION = "artifact.falcosecurity.dev/registry-hosts"
_DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io"}


class CredentialsProblem(Exception):
    """The Secret cannot give credentials for this registry; the message says why, the reason in one word
    (``InvalidSecret``: the Secret is malformed; ``SecretNotForRegistry``: it does not name this registry)."""

    def __init__(self, message: str, reason: str = "InvalidSecret") -> None:
        super().__init__(message)
        self.reason = reason


@record(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"Credentials(username={self.username!r})"


def grantable(secret: dict[str, Any]) -> bool:
    """Whether the operator lets agents read this Secret (its type says it holds registry credentials, or its
    owner opted in with the label): a user who may create artifacts but not read Secrets must not be able to
    point an agent at any Secret of the namespace and have its contents sent to a registry of their choosing."""
    labels = (secret.get("metadata") or {}).get("labels") or {}
    opted_in = labels.get(PULL_SECRET_LABEL) == "true" or labels.get(VERIFICATION_KEY_LABEL) == "true"
    return secret.get("type") in (DOCKER_CONFIG_JSON, BASIC_AUTH) or opted_in


GRANT_RULE = (
    f"the operator grants agents only Secrets of type {DOCKER_CONFIG_JSON} or {BASIC_AUTH}, or labelled "
    f"{PULL_SECRET_LABEL}=true (or {VERIFICATION_KEY_LABEL}=true for a verification key)"
)


def credentials_from_secret(
    secret: dict[str, Any], host: str, username_key: str = "username", password_key: str = "password"
) -> Credentials:
    name = (secret.get("metadata") or {}).get("name", "")
    data = secret.get("data") or {}
    if secret.get("type") == DOCKER_CONFIG_JSON:
        return _from_docker_config(_decoded(data, ".dockerconfigjson", name), host, name)
    _check_bound(secret, host, name)
    username = _decoded(data, username_key, name).decode(errors="replace")
    password = _decoded(data, password_key, name).decode(errors="replace")
    return Credentials(username, password)


def registry_hosts(secret: dict[str, Any]) -> list[str]:
    """The hosts a username/password Secret's annotation lets its credentials go to, normalized."""
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    listed = str(annotations.get(REGISTRY_HOSTS_ANNOTATION) or "")
    return [normalize_host(item) for item in listed.replace(" ", ",").split(",") if item.strip()]


def _check_bound(secret: dict[str, Any], host: str, secret_name: str) -> None:
    hosts = registry_hosts(secret)
    wanted = normalize_host(host)
    if not hosts:
        raise CredentialsProblem(
            f"Secret {secret_name} does not say which registries may receive its credentials: annotate it with "
            f"{REGISTRY_HOSTS_ANNOTATION}={wanted} (comma-separated registry hosts)", "SecretNotForRegistry",
        )  # fmt: skip
    if wanted not in hosts:
        raise CredentialsProblem(
            f"Secret {secret_name} is for {', '.join(hosts)} (its {REGISTRY_HOSTS_ANNOTATION} annotation), not "
            f"{wanted}: its credentials are never sent to another registry", "SecretNotForRegistry",
        )  # fmt: skip


def _decoded(data: dict[str, Any], key: str, secret_name: str) -> bytes:
    if key not in data:
        keys = ", ".join(sorted(data)) or "none"
        raise CredentialsProblem(f"Secret {secret_name} has no key {key!r} (its keys: {keys})")
    try:
        return base64.b64decode(str(data[key]), validate=True)
    except (binascii.Error, ValueError):
        raise CredentialsProblem(f"Secret {secret_name} key {key!r} is not base64") from None


def normalize_host(key: str) -> str:
    """A docker config ``auths`` key or registry name as a bare lower-case ``host[:port]``."""
    host = key.strip().lower()
    for scheme in ("https://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
    host = host.split("/", 1)[0]
    return "docker.io" if host in _DOCKER_HUB else host


def _from_docker_config(raw: bytes, host: str, secret_name: str) -> Credentials:
    try:
        document = json.loads(raw)
    except ValueError:
        raise CredentialsProblem(f"Secret {secret_name}: .dockerconfigjson is not JSON") from None
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        raise CredentialsProblem(f"Secret {secret_name}: .dockerconfigjson has no auths")
    wanted = normalize_host(host)
    for key, entry in auths.items():
        if normalize_host(str(key)) != wanted or not isinstance(entry, dict):
            continue
        if entry.get("username") and entry.get("password"):
            return Credentials(str(entry["username"]), str(entry["password"]))
        if entry.get("auth"):
            try:
                decoded = base64.b64decode(str(entry["auth"]), validate=True).decode()
            except (binascii.Error, ValueError):
                raise CredentialsProblem(f"Secret {secret_name}: the auth of {key} is not base64") from None
            username, colon, password = decoded.partition(":")
            if colon:
                return Credentials(username, password)
        raise CredentialsProblem(f"Secret {secret_name}: the entry for {key} has neither auth nor username/password")
    listed = ", ".join(sorted(str(key) for key in auths)) or "none"
    raise CredentialsProblem(f"Secret {secret_name} has no credentials for {host} (it lists: {listed})",
                             "SecretNotForRegistry")  # fmt: skip
