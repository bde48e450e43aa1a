"""Packing files as Falco artifacts the way falcoctl publishes them, ready to upload: the blobs and the manifest.

A rules file becomes one OCI image manifest whose config is ``application/vnd.cncf.falco.rulesfile.config.v1+json``
(``name``, ``version``, ``dependencies`` from the file's ``required_plugin_versions``, ``requirements`` with
``engine_version_semver`` from its ``required_engine_version``) and whose one layer is a tar.gz holding the file.
A plugin becomes an image index with one such manifest per platform (plugin media types, ``plugin_api_version`` as
its requirement). Archives are reproducible: the same file packs to the same digest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from typing import Any

from ...records import record
from .media import OCI_INDEX, OCI_MANIFEST, PLUGIN, RULES, ArtifactType

TITLE_ANNOTATION = "org.opencontainers.image.title"
ENGINE_REQUIREMENT = "engine_version_semver"
PLUGIN_API_REQUIREMENT = "plugin_api_version"

Json = dict[str, Any]


@record(frozen=True)
class Blob:
    media_type: str
    data: bytes
    annotations: Mapping[str, str] | None = None

    @property
    def digest(self) -> str:
        return digest_of(self.data)

    def descriptor(self) -> Json:
        described: Json = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}
        if self.annotations:
            described["annotations"] = dict(self.annotations)
        return described


@record(frozen=True)
class PackedManifest:
    """One image manifest and the blobs it names (config first)."""

    config: Blob
    layers: tuple[Blob, ...]

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (self.config, *self.layers)

    @property
    def body(self) -> bytes:
        return canonical_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": self.config.descriptor(),
                               "layers": [layer.descriptor() for layer in self.layers]})  # fmt: skip

    @property
    def digest(self) -> str:
        return digest_of(self.body)


@record(frozen=True)
class Platform:
    os: str
    architecture: str

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/architecture``, e.g. ``linux/amd64``."""
        parts = text.split("/")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"platform {text!r}: write OS/ARCHITECTURE, e.g. linux/amd64")
        return cls(parts[0], parts[1])

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}"


@record(frozen=True)
class PackedIndex:
    """An image index of one manifest per platform."""

    manifests: tuple[tuple[Platform, PackedManifest], ...]

    @property
    def body(self) -> bytes:
        entries = [{"mediaType": OCI_MANIFEST, "digest": manifest.digest, "size": len(manifest.body),
                    "platform": {"os": platform.os, "architecture": platform.architecture}}
                   for platform, manifest in self.manifests]  # fmt: skip
        return canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})

    @property
    def digest(self) -> str:
        return digest_of(self.body)


def canonical_json(document: Json) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_gz(files: Mapping[str, bytes]) -> bytes:
    """A tar.gz of regular files (mode 0644, time 0, no owner), byte for byte the same for the same files."""
    tarred = io.BytesIO()
    with tarfile.open(fileobj=tarred, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(tarred.getvalue(), mtime=0)


def layer_title(file_name: str) -> str:
    """The layer's title as falcoctl names its archive: the file name up to its first dot, then ``.tar.gz``."""
    return file_name.split(".", 1)[0] + ".tar.gz"


def rules_config(document: object, name: str, version: str | None) -> Json:
    """falcoctl's rulesfile config for a loaded rules document (a list of items)."""
    items = [item for item in document if isinstance(item, dict)] if isinstance(document, list) else []
    config: Json = {"name": name}
    if version:
        config["version"] = version
    plugins = next((item["required_plugin_versions"] for item in items if "required_plugin_versions" in item), None)
    dependencies = [_dependency(entry) for entry in plugins or [] if isinstance(entry, dict)]
    if dependencies:
        config["dependencies"] = dependencies
    engine = next((item["required_engine_version"] for item in items if "required_engine_version" in item), None)
    if engine is not None:
        config["requirements"] = [{"name": ENGINE_REQUIREMENT, "version": engine_semver(engine)}]
    return config


def engine_semver(value: object) -> str:
    """``required_engine_version`` as a semantic version: a whole number N was the minor of 0.N.0."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"0.{value}.0"
    return str(value)


def _dependency(entry: Mapping[str, Any]) -> Json:
    dependency: Json = {"name": str(entry.get("name", "")), "version": str(entry.get("version", ""))}
    alternatives = [{"name": str(alt.get("name", "")), "version": str(alt.get("version", ""))}
                    for alt in entry.get("alternatives") or [] if isinstance(alt, dict)]  # fmt: skip
    if alternatives:
        dependency["alternatives"] = sorted(alternatives, key=lambda alternative: alternative["name"])
    return dependency


def plugin_config(name: str, version: str | None, plugin_api_version: str | None = None) -> Json:
    config: Json = {"name": name}
    if version:
        config["version"] = version
    if plugin_api_version:
        config["requirements"] = [{"name": PLUGIN_API_REQUIREMENT, "version": plugin_api_version}]
    return config


def pack_file(kind: ArtifactType, file_name: str, data: bytes, config: Json) -> PackedManifest:
    """One manifest: ``config`` as the kind's config blob, the file in a tar.gz as its one layer."""
    layer = Blob(kind.layer, tar_gz({file_name: data}), {TITLE_ANNOTATION: layer_title(file_name)})
    return PackedManifest(Blob(kind.config, canonical_json(config)), (layer,))


def pack_layer(kind: ArtifactType, layer: bytes, config: Json | bytes) -> PackedManifest:
    """A manifest around a layer made elsewhere (tests publish broken ones on purpose)."""
    config_data = config if isinstance(config, bytes) else canonical_json(config)
    return PackedManifest(Blob(kind.config, config_data), (Blob(kind.layer, layer),))


def pack_rules(file_name: str, data: bytes, document: object, name: str, version: str | None) -> PackedManifest:
    return pack_file(RULES, file_name, data, rules_config(document, name, version))


def pack_plugin(
    libraries: Sequence[tuple[Platform, str, bytes]], name: str, version: str | None,
    plugin_api_version: str | None = None,
) -> PackedIndex:  # fmt: skip
    """An index of one manifest per ``(platform, file name, library)``, in platform order."""
    config = plugin_config(name, version, plugin_api_version)
    manifests = [(platform, pack_file(PLUGIN, file_name, data, config))
                 for platform, file_name, data in sorted(libraries, key=lambda entry: str(entry[0]))]  # fmt: skip
    return PackedIndex(tuple(manifests))
