"""The Falco's `spec.registries`: a CA bundle per registry host, and mirrors tried before it (air-gapped clusters).

The Falco is written by cluster administrators; artifact authors cannot change which CAs a node trusts for a host
nor where a host's references are fetched from.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from .base import KubeModel
from .ocirefs import REGISTRY_HOST_PATTERN
from .schema_types import cel, validations

MAX_REGISTRIES = 16
MAX_MIRRORS = 8
CONFIG_MAP_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"

RegistryHost = Annotated[str, Field(pattern=REGISTRY_HOST_PATTERN, max_length=253)]


class ConfigMapKeyRef(KubeModel):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    """A ConfigMap in the Falco's namespace."""
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=CONFIG_MAP_KEY_PATTERN)] = "ca.crt"
    """The key holding the PEM bundle; unset: `ca.crt`."""


class RegistryCABundle(KubeModel):
    config_map_ref: ConfigMapKeyRef
    """The ConfigMap key with the PEM certificates trusted for this host (besides the system's CAs). It is mounted
    into the agent container: no API read, no RBAC."""


class RegistryHostSettings(KubeModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.caBundle) || (has(self.mirrors) && size(self.mirrors) > 0)",
                "a registries entry needs caBundle or mirrors (or both)",
            ),
            cel(
                "!has(self.mirrors) || !self.mirrors.exists(m, m.lowerAscii() == self.host.lowerAscii())",
                "a host cannot be its own mirror",
                ".mirrors",
            ),
            cel(
                "!has(self.mirrors) || self.mirrors.all(m, self.mirrors.exists_one(n, n.lowerAscii() == "
                "m.lowerAscii()))",
                "mirrors must not repeat a host",
                ".mirrors",
            ),
            cel(
                "!has(self.mirrorsOnly) || !self.mirrorsOnly || (has(self.mirrors) && size(self.mirrors) > 0)",
                "mirrorsOnly needs mirrors",
                ".mirrorsOnly",
            ),
            cel(
                "!has(self.credentialsToMirrors) || !self.credentialsToMirrors || "
                "(has(self.mirrors) && size(self.mirrors) > 0)",
                "credentialsToMirrors needs mirrors",
                ".credentialsToMirrors",
            ),
        )
    )

    host: RegistryHost
    """The registry host (and port) as references name it, e.g. `registry.corp:5000` (compared without case; a
    port is part of the host: `registry.corp` and `registry.corp:443` are two entries)."""
    ca_bundle: RegistryCABundle | None = None
    """CAs trusted for this host only (and for no other host). A mirror's CA goes in the mirror's own entry."""
    mirrors: Annotated[list[RegistryHost], Field(max_length=MAX_MIRRORS)] | None = None
    """Hosts tried first, in order, for references to `host` (as containerd's hosts.toml): the same repository path
    and tag or digest, from the first mirror that answers. Mirrors are reached over verified TLS only (the
    artifact's plainHTTP and insecureSkipVerify apply to its own host)."""
    mirrors_only: bool | None = None
    """Never ask `host` itself when every mirror fails (an air-gapped cluster); unset: `host` is tried last."""
    credentials_to_mirrors: bool | None = None
    """Send an artifact's credentials for `host` to its mirrors too; unset: mirrors are asked without
    credentials (a host's credentials never leave for another host unless this says so)."""


Registries = Annotated[
    list[RegistryHostSettings],
    Field(
        max_length=MAX_REGISTRIES,
        json_schema_extra=validations(
            cel(
                "self.all(r, self.exists_one(s, s.host.lowerAscii() == r.host.lowerAscii()))",
                "each host may have one registries entry",
            )
        ),
    ),
]
