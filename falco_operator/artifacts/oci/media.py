"""Media types of Falco artifacts (falcoctl's) and of the OCI and Docker manifests that carry them."""

from __future__ import annotations

import os

from ...records import record

_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def machine_architecture() -> str:
    """This machine's architecture as OCI platforms name it (``amd64``, ``arm64``)."""
    machine = os.uname().machine.lower()
    return _ARCHITECTURES.get(machine, machine)


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_MANIFEST_LIST)

RULES_LAYER = "application/vnd.cncf.falco.rulesfile.layer.v1+tar.gz"
RULES_CONFIG = "application/vnd.cncf.falco.rulesfile.config.v1+json"
PLUGIN_LAYER = "application/vnd.cncf.falco.plugin.layer.v1+tar.gz"
PLUGIN_CONFIG = "application/vnd.cncf.falco.plugin.config.v1+json"


@record(frozen=True)
class ArtifactType:
    """What an artifact kind accepts from a registry: its layer media type and the file it takes from it."""

    label: str
    layer: str
    config: str
    file_suffixes: tuple[str, ...]


RULES = ArtifactType("rules", RULES_LAYER, RULES_CONFIG, (".yaml", ".yml"))
PLUGIN = ArtifactType("plugin", PLUGIN_LAYER, PLUGIN_CONFIG, (".so",))
ARTIFACT_TYPES = (RULES, PLUGIN)


def type_of_layer(media_type: str) -> ArtifactType | None:
    return next((kind for kind in ARTIFACT_TYPES if kind.layer == media_type), None)
