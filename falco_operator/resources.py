"""The project's custom resources as runtime ``Resource`` descriptors (shared by the operator and the agent)."""

from __future__ import annotations

from .api import ALL_KINDS, VERSION, KindInfo
from .kube import Resource, ResourceRegistry


def as_resource(info: KindInfo) -> Resource:
    return Resource(info.group, VERSION, info.kind, info.plural, namespaced=True)


_BY_KIND = {info.kind: as_resource(info) for info in ALL_KINDS}
FALCOS = _BY_KIND["Falco"]
COMPONENTS = _BY_KIND["Component"]
RULESFILES = _BY_KIND["Rulesfile"]
PLUGINS = _BY_KIND["Plugin"]
CONFIGS = _BY_KIND["Config"]
FALCORULES = _BY_KIND["FalcoRule"]
ARTIFACTREPORTS = _BY_KIND["ArtifactReport"]


def registry() -> ResourceRegistry:
    """Core kinds plus every custom resource of the project."""
    result = ResourceRegistry()
    for resource in _BY_KIND.values():
        result.register(resource)
    return result
