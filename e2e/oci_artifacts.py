"""Falco-typed OCI artifacts for tests, built the way falcoctl publishes them, and broken ones on purpose."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from typing import Literal

from .registry import Registry

RULES_LAYER = "application/vnd.cncf.falco.rulesfile.layer.v1+tar.gz"
RULES_CONFIG = "application/vnd.cncf.falco.rulesfile.config.v1+json"
PLUGIN_LAYER = "application/vnd.cncf.falco.plugin.layer.v1+tar.gz"
PLUGIN_CONFIG = "application/vnd.cncf.falco.plugin.config.v1+json"

Hostility = Literal["symlink", "hardlink", "parent", "absolute", "device", "two-files", "not-gzip"]


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


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
    return json.dumps({"name": name, "version": version, "dependencies": [], "requirements": []}).encode()


def plugin_config(name: str = "container", version: str = "0.7.1") -> bytes:
    return json.dumps({"name": name, "version": version, "dependencies": [], "requirements": []}).encode()


def push_rules(registry: Registry, repository: str, tag: str, rules: bytes, file_name: str = "falco_rules.yaml") -> str:
    """A rules artifact (one manifest); returns its digest."""
    layer = tar_gz({file_name: rules})
    return registry.push_artifact(repository, tag, layer, RULES_LAYER, rules_config(), RULES_CONFIG)


def push_rules_layer(registry: Registry, repository: str, tag: str, layer: bytes) -> str:
    return registry.push_artifact(repository, tag, layer, RULES_LAYER, rules_config(), RULES_CONFIG)


def push_plugin(
    registry: Registry, repository: str, tag: str, libraries: dict[str, bytes], name: str = "container",
    version: str = "0.7.1",
) -> str:  # fmt: skip
    """A plugin artifact: an image index with one manifest per architecture, each holding ``lib<name>.so``, and
    falcoctl's config (``name``, ``version``)."""
    platforms = {
        architecture: (tar_gz({f"lib{name}.so": library}), PLUGIN_LAYER, plugin_config(name, version), PLUGIN_CONFIG)
        for architecture, library in libraries.items()
    }
    return registry.push_index(repository, tag, platforms)


def gzip_bomb(size: int, file_name: str = "falco_rules.yaml") -> bytes:
    """A small layer that expands to ``size`` bytes of one rules file."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        info = tarfile.TarInfo(file_name)
        info.size = size
        archive.addfile(info, io.BytesIO(b"#" * size))
    return gzip.compress(buffer.getvalue())
