"""What the agent knows of OCI pulls before it pulls anything: their settings, and which artifacts have an OCI source.

The pull machinery (``pulls.py``: the registry client's callers, the disk cache, credentials, signature checks) is
imported by the first artifact with an OCI source (``oci_sources.OCISources``); an agent without one never imports
it. The command line builds ``PullSettings`` at start, and the stand-in asks ``oci_source`` of every artifact it is
given, so both live here, apart from the machinery. ``pulls.pull_request`` asks ``oci_source`` too: both decide
alike what has a source to pull.
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path

from falco_operator.api.ocirefs import MIN_REFRESH_SECONDS
from falco_operator.api.plain import OCIArtifact, Plugin, Rulesfile
from falco_operator.artifacts import Artifact
from falco_operator.artifacts.oci.hosts import RegistryHosts
from falco_operator.artifacts.oci.media import PLUGIN, RULES, ArtifactType, machine_architecture
from falco_operator.records import record


@record(frozen=True)
class PullSettings:
    cache_dir: Path
    concurrency: int = 3
    """Pulls running at once."""
    request_timeout: float = 30.0
    """Bound on every connect, read and write to a registry."""
    pull_deadline: float = 300.0
    """Bound on one whole pull (resolve, credentials, download)."""
    max_rules_bytes: int = 4 * 1024 * 1024
    """Largest rules layer, and largest uncompressed rules archive, accepted (rules are parsed with a 4 MiB cap
    anyway)."""
    max_plugin_bytes: int = 64 * 1024 * 1024
    """Largest plugin layer, and largest uncompressed plugin archive, accepted. The file taken out is held in
    memory, so this stays well under the agent container's 256 MiB memory limit."""
    min_refresh: float = MIN_REFRESH_SECONDS
    """Shortest ``refreshInterval`` honoured (the CRD refuses shorter ones; older objects are raised to it)."""
    retry_initial: float = 5.0
    retry_max: float = 120.0
    extra_ca: str | None = None
    """A PEM file of CAs trusted for registries besides the system's."""
    allow_private: bool = False
    """Reach registries and token services at loopback, link-local and private addresses too."""
    architecture: str = field(default_factory=machine_architecture)
    hosts: RegistryHosts = field(default_factory=RegistryHosts)
    """CAs per registry host and mirrors (the Falco's ``spec.registries``)."""

    def max_bytes(self, kind: ArtifactType) -> int:
        return self.max_plugin_bytes if kind == PLUGIN else self.max_rules_bytes


def oci_source(artifact: Artifact) -> tuple[OCIArtifact, ArtifactType] | None:
    """The artifact's OCI source and what it pulls from there (a Rulesfile's rules, a Plugin's library); None for an
    artifact delivered otherwise (inline, from a ConfigMap, a Config)."""
    if isinstance(artifact, Rulesfile):
        oci, kind = artifact.spec.oci(), RULES
    elif isinstance(artifact, Plugin):
        oci, kind = artifact.spec.oci_artifact, PLUGIN
    else:
        return None
    return None if oci is None else (oci, kind)
