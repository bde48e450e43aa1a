"""Pulling Falco artifacts from OCI registries: references to digests, credentials, safe layer extraction."""

from typing import TYPE_CHECKING

from falco_operator.lazy import lazy_exports

if TYPE_CHECKING:
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
    from .failures import CONFIG_UNREADABLE, PULL_FAILURE_REASONS, PullFailed, withdraws
    from .media import PLUGIN, RULES, ArtifactType, machine_architecture
    from .registry import Pulled, RegistrySession, Resolved, http_client

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

__getattr__ = lazy_exports(__name__, __file__)
