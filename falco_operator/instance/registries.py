"""The Falco's ``spec.registries`` in the pod: the CA bundles mounted into the agent container from their
ConfigMaps (a projected volume: no API read, so no RBAC), and the agent's flags saying which file trusts which host
and which mirrors serve a host."""

from __future__ import annotations

from typing import Any

from ..api import Falco
from ..artifacts.oci.hosts import CA_FLAG, CREDENTIALS_TO_MIRRORS_FLAG, MIRROR_FLAG, MIRRORS_ONLY_FLAG

Json = dict[str, Any]
REGISTRY_CA_VOLUME = "registry-ca"
REGISTRY_CA_DIR = "/etc/falco-agent/registry-ca"


def registry_ca_volume(falco: Falco) -> Json | None:
    """One projected volume with a file per entry that has a CA bundle (``<index>.pem``: hosts may share a
    ConfigMap key, and a host name is no file name). Optional: a missing ConfigMap or key leaves the file out and the
    agent reports it on the artifacts of that host, instead of the whole pod never starting."""
    sources = [
        {"configMap": {"name": entry.ca_bundle.config_map_ref.name, "optional": True,
                       "items": [{"key": entry.ca_bundle.config_map_ref.key, "path": f"{index}.pem"}]}}
        for index, entry in enumerate(falco.spec.registries or [])
        if entry.ca_bundle is not None
    ]  # fmt: skip
    if not sources:
        return None
    return {"name": REGISTRY_CA_VOLUME, "projected": {"sources": sources}}


def registry_ca_mount() -> Json:
    return {"name": REGISTRY_CA_VOLUME, "mountPath": REGISTRY_CA_DIR, "readOnly": True}


def registry_agent_args(falco: Falco) -> list[str]:
    args: list[str] = []
    for index, entry in enumerate(falco.spec.registries or []):
        host = entry.host.lower()
        if entry.ca_bundle is not None:
            args.append(f"{CA_FLAG}={host}={REGISTRY_CA_DIR}/{index}.pem")
        args += [f"{MIRROR_FLAG}={host}={mirror.lower()}" for mirror in entry.mirrors or []]
        if entry.mirrors and entry.mirrors_only:
            args.append(f"{MIRRORS_ONLY_FLAG}={host}")
        if entry.mirrors and entry.credentials_to_mirrors:
            args.append(f"{CREDENTIALS_TO_MIRRORS_FLAG}={host}")
    return args
