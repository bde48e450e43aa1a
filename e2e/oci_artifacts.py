"""Falco-typed OCI artifacts for tests, packed by the operator's own packer (the one `falco-operator push` uses,
falco_operator/artifacts/oci/packing.py), and broken ones on purpose."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from typing import Literal

from falco_operator.artifacts.oci.media import PLUGIN_CONFIG as PLUGIN_CONFIG
from falco_operator.artifacts.oci.media import PLUGIN_LAYER as PLUGIN_LAYER
from falco_operator.artifacts.oci.media import RULES_CONFIG as RULES_CONFIG
from falco_operator.artifacts.oci.media import RULES_LAYER as RULES_LAYER
from falco_operator.artifacts.oci.packing import Platform, pack_plugin, pack_rules
from falco_operator.artifacts.oci.packing import tar_gz as tar_gz
from falco_operator.artifacts.yamldoc import YamlProblem, load_yaml

from .registry import Registry

Hostility = Literal["symlink", "hardlink", "parent", "absolute", "device", "two-files", "not-gzip"]


def hostile_layer(kind: Hostility, file_name: str = "falco_rules.yaml") -> bytes:
    """A layer the agent must refuse; the payload file is there too, so only the hostile entry is to blame."""
    if kind == "not-gzip":
        return b"this is not a tar.gz"
    if kind == "two-files":
        return tar_gz({file_name: b"- list: a\n  items: []\n", "extra-" + file_name: b"- list: b\n  items: []\n"})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        payload = tarfile.TarInfo(file_name)
        data = b"- list: a\n  items: []\n"
        payload.size = len(data)
        archive.addfile(payload, io.BytesIO(data))
        entry = tarfile.TarInfo({"parent": "../escape.yaml", "absolute": "/etc/escape.yaml"}.get(kind, "entry"))
        if kind == "symlink":
            entry.type, entry.linkname = tarfile.SYMTYPE, "/etc/shadow"
        elif kind == "hardlink":
            entry.type, entry.linkname = tarfile.LNKTYPE, file_name
        elif kind == "device":
            entry.type, entry.devmajor, entry.devminor = tarfile.CHRTYPE, 1, 3
        else:
            entry.size = 3
            archive.addfile(entry, io.BytesIO(b"bad"))
            return _finish(archive, buffer)
        archive.addfile(entry)
    return buffer.getvalue()


def _finish(archive: tarfile.TarFile, buffer: io.BytesIO) -> bytes:
    archive.close()
    return buffer.getvalue()


def rules_config(name: str = "falco-rules", version: str = "1.0.0") -> bytes:
    """The config of a rules file with no requirements (``dependencies`` and ``requirements`` empty, as some
    publishers write them)."""
    return json.dumps({"name": name, "version": version, "dependencies": [], "requirements": []}).encode()


def push_rules(registry: Registry, repository: str, tag: str, rules: bytes, file_name: str = "falco_rules.yaml") -> str:
    """A rules artifact (one manifest) packed as `falco-operator push` packs it; returns its digest."""
    try:
        document: object = load_yaml(rules)
    except YamlProblem:  # tests publish unreadable rules on purpose: a config without requirements
        document = None
    packed = pack_rules(file_name, rules, document, "falco-rules", "1.0.0")
    return registry.publisher(repository).push_manifest(packed, tag)


def push_rules_layer(registry: Registry, repository: str, tag: str, layer: bytes) -> str:
    return registry.push_artifact(repository, tag, layer, RULES_LAYER, rules_config(), RULES_CONFIG)


def push_plugin(
    registry: Registry, repository: str, tag: str, libraries: dict[str, bytes], name: str = "container",
    version: str = "0.7.1",
) -> str:  # fmt: skip
    """A plugin artifact packed as `falco-operator push --type plugin` packs it: an image index with one manifest per
    ``linux/<architecture>``, each holding ``lib<name>.so``; returns the index digest."""
    entries = [(Platform("linux", architecture), f"lib{name}.so", library)
               for architecture, library in libraries.items()]  # fmt: skip
    return registry.publisher(repository).push_index(pack_plugin(entries, name, version), tag)


def gzip_bomb(size: int, file_name: str = "falco_rules.yaml") -> bytes:
    """A small layer that expands to ``size`` bytes of one rules file."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        info = tarfile.TarInfo(file_name)
        info.size = size
        archive.addfile(info, io.BytesIO(b"#" * size))
    return gzip.compress(buffer.getvalue())
