"""The project's custom resources as runtime ``Resource`` descriptors (shared by the operator and the agent).

Written out rather than derived from ``api.kinds`` (which holds every kind's models): the agent needs the names, not
the models of the Falco, Component and FalcoRule kinds. ``tests/unit/test_lazy_imports.py`` holds both in agreement.
"""

from __future__ import annotations

from .kube import Resource, ResourceRegistry

INSTANCE = "instance.falcosecurity.dev"
ARTIFACT = "artifact.falcosecurity.dev"
VERSION = "v1alpha1"

FALCOS = Resource(INSTANCE, VERSION, "Falco", "falcos", namespaced=True)
COMPONENTS = Resource(INSTANCE, VERSION, "Component", "components", namespaced=True)
RULESFILES = Resource(ARTIFACT, VERSION, "Rulesfile", "rulesfiles", namespaced=True)
PLUGINS = Resource(ARTIFACT, VERSION, "Plugin", "plugins", namespaced=True)
CONFIGS = Resource(ARTIFACT, VERSION, "Config", "configs", namespaced=True)
FALCORULES = Resource(ARTIFACT, VERSION, "FalcoRule", "falcorules", namespaced=True)
ARTIFACTREPORTS = Resource(ARTIFACT, VERSION, "ArtifactReport", "artifactreports", namespaced=True)
PROJECT_RESOURCES = (FALCOS, COMPONENTS, RULESFILES, PLUGINS, CONFIGS, FALCORULES, ARTIFACTREPORTS)


def registry() -> ResourceRegistry:
    """Core kinds plus every custom resource of the project."""
    result = ResourceRegistry()
    for resource in PROJECT_RESOURCES:
        result.register(resource)
    return result
