"""Pulling Falco artifacts from OCI registries: references to digests, credentials, safe layer extraction."""

from .archive import ArchiveFile, ArchiveRefused, single_file
from .credentials import (
    BASIC_AUTH,
    DOCKER_CONFIG_JSON,
    GRANT_RULE,
    PULL_SECRET_LABEL,
    REGISTRY_HOSTS_ANNOTATION,
    VERIFICATION_KEY_LABEL,
    Credentials,
    CredentialsProblem,
    credentials_from_secret,
    grantable,
)
from .failures import PULL_FAILURE_REASONS, withdraws
from .media import PLUGIN, RULES, ArtifactType
from .registry import (
    CONFIG_UNREADABLE,
    Pulled,
    PullFailed,
    RegistrySession,
    Resolved,
    http_client,
    machine_architecture,
)

__all__ = [
    "BASIC_AUTH",
    "CONFIG_UNREADABLE",
    "DOCKER_CONFIG_JSON",
    "GRANT_RULE",
    "PLUGIN",
    "PULL_FAILURE_REASONS",
    "PULL_SECRET_LABEL",
    "REGISTRY_HOSTS_ANNOTATION",
    "RULES",
    "VERIFICATION_KEY_LABEL",
    "ArchiveFile",
    "ArchiveRefused",
    "ArtifactType",
    "Credentials",
    "CredentialsProblem",
    "PullFailed",
    "Pulled",
    "RegistrySession",
    "Resolved",
    "credentials_from_secret",
    "grantable",
    "http_client",
    "machine_architecture",
    "single_file",
    "withdraws",
]
