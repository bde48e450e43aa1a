"""OCI image archives written without a container engine: an OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/...``) in one tar, which ``ctr images import`` and ``podman load`` read.

An image is one uncompressed layer, a tar of a root filesystem made by GNU tar. The index names the image with
the ``io.containerd.image.name`` annotation, fully qualified, because the CRI looks a pod's short image name up
in that form (``falco-operator:0.1.0`` is ``docker.io/library/falco-operator:0.1.0``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EPOCH = "1970-01-01T00:00:00Z"
IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The runtime mounts its own /dev, /proc and /sys: the layer keeps these directories but not what is in them
# (debootstrap leaves device nodes in dev/).
RUNTIME_MOUNTS = ("dev", "proc", "sys")

Blob = bytes | Path


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an image's configuration (the ``config`` object of the OCI image config)."""

    user: str = ""
    env: tuple[str, ...] = (DEFAULT_PATH,)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""

    def as_json(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "User": self.user,
            "Env": list(self.env),
            "Entrypoint": list(self.entrypoint),
            "Cmd": list(self.cmd),
            "WorkingDir": self.working_dir,
        }
        return {key: value for key, value in fields.items() if value}


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """Stable bytes for a document, so that equal documents have equal digests."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def digest_of(blob: Blob) -> tuple[str, int]:
    """The ``sha256:<hex>`` digest and the size of a blob held in memory or in a file."""
    if isinstance(blob, bytes):
        return f"sha256:{hashlib.sha256(blob).hexdigest()}", len(blob)
    hasher = hashlib.sha256()
    with blob.open("rb") as source:
        while chunk := source.read(1 << 20):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}", blob.stat().st_size


def oci_architecture() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def write_layer(rootfs: Path, out: Path) -> None:
    """A tar of ``rootfs`` as an image layer: numeric owners (the image's users need not exist on this host),
    extended attributes (file capabilities). The same tree gives the same bytes: names sorted, and no access or
    change times (``--xattrs`` makes a POSIX tar, whose extended headers would record them)."""
    excludes = [f"--exclude=./{directory}/*" for directory in RUNTIME_MOUNTS]
    reproducible = ["--sort=name", "--pax-option=delete=atime,delete=ctime"]
    command = ["tar", "--numeric-owner", "--xattrs", *reproducible, "--anchored", *excludes]
    subprocess.run([*command, "-C", str(rootfs), "-cf", str(out), "."], check=True)


def image_config_document(config: ImageConfig, layer_digest: str, created_by: str) -> dict[str, Any]:
    return {
        "created": EPOCH,
        "architecture": oci_architecture(),
        "os": "linux",
        "config": config.as_json(),
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": EPOCH, "created_by": created_by}],
    }


def write_image_archive(out: Path, name: str, layer: Path, config: ImageConfig, created_by: str) -> str:
    """Write the OCI archive of a one-layer image named ``name`` (fully qualified) to ``out``; return the
    manifest's digest. The layer is stored uncompressed, so its digest is also its diff ID."""
    layer_digest, layer_size = digest_of(layer)
    config_blob = canonical_json(image_config_document(config, layer_digest, created_by))
    config_digest, config_size = digest_of(config_blob)
    manifest_blob = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer_digest, "size": layer_size}],
        }
    )
    manifest_digest, manifest_size = digest_of(manifest_blob)
    manifest = {"mediaType": MANIFEST_MEDIA_TYPE, "digest": manifest_digest, "size": manifest_size}
    index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [_named(manifest, name)]}
    blobs: dict[str, Blob] = {layer_digest: layer, config_digest: config_blob, manifest_digest: manifest_blob}
    _write_archive(out, canonical_json(index), blobs)
    return manifest_digest


def pack_layout(layout: Path, name: str, out: Path) -> str:
    """Pack an OCI image layout directory holding one image (``podman save --format oci-dir``) into an archive,
    with the index naming the image ``name`` as containerd reads it; return the manifest's digest."""
    index = json.loads((layout / "index.json").read_text())
    manifests = index.get("manifests", [])
    if len(manifests) != 1:
        raise ValueError(f"{layout} holds {len(manifests)} images, expected one")
    index["manifests"] = [_named(manifests[0], name)]
    blobs: dict[str, Blob] = {
        f"sha256:{blob.name}": blob for blob in sorted((layout / "blobs" / "sha256").iterdir()) if blob.is_file()
    }
    _write_archive(out, canonical_json(index), blobs)
    return str(manifests[0]["digest"])


def read_index(archive: Path) -> dict[str, Any]:
    """The ``index.json`` of an OCI archive."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        if member is None:
            raise ValueError(f"{archive} has no index.json")
        document: dict[str, Any] = json.load(member)
        return document


def _named(descriptor: Mapping[str, Any], name: str) -> dict[str, Any]:
    annotations = {**descriptor.get("annotations", {}), IMAGE_NAME_ANNOTATION: name}
    return {**descriptor, "annotations": annotations}


def _write_archive(out: Path, index: bytes, blobs: Mapping[str, Blob]) -> None:
    """Write the layout to a temporary file next to ``out`` and rename it, so ``out`` is whole or absent."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            tar.addfile(_entry(directory, 0, tarfile.DIRTYPE))
        _add(tar, "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
        _add(tar, "index.json", index)
        for digest, blob in blobs.items():
            _add(tar, f"blobs/sha256/{digest.removeprefix('sha256:')}", blob)
    os.replace(partial, out)


def _add(tar: tarfile.TarFile, name: str, blob: Blob) -> None:
    if isinstance(blob, bytes):
        tar.addfile(_entry(name, len(blob)), io.BytesIO(blob))
        return
    with blob.open("rb") as source:
        tar.addfile(_entry(name, blob.stat().st_size), source)


def _entry(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info
