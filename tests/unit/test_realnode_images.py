"""The pure parts of the real node's images: the OCI archive writer (read back with tarfile, every digest and size
recomputed), the naming of images, and the digests that name cached archives."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from e2e.realnode.images import FALCO_IMAGE, PRODUCT_IMAGE, Cache, fully_qualified, inputs_digest
from e2e.realnode.ocilayout import (
    CONFIG_MEDIA_TYPE,
    EPOCH,
    IMAGE_NAME_ANNOTATION,
    INDEX_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    ImageConfig,
    pack_layout,
    read_index,
    write_image_archive,
    write_layer,
)

ROOT = Path(__file__).resolve().parents[2]
NAME = "docker.io/library/example:1.0"


def _tree(root: Path) -> Path:
    """A small root filesystem: a program, a symlink, a file owned by a user this host does not know, and
    a device-node stand-in under dev/ that the layer must leave out."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("#!/bin/sh\necho hi\n")
    (root / "usr/bin/tool").chmod(0o755)
    (root / "bin").symlink_to("usr/bin")
    (root / "home/nobody").mkdir(parents=True)
    (root / "home/nobody/data").write_text("data")
    if os.geteuid() == 0:
        os.chown(root / "home/nobody/data", 65532, 65532)
    (root / "dev").mkdir()
    (root / "dev/null").write_text("")
    return root


class Archive:
    """An OCI archive opened for checking: its members, and its blobs by digest."""

    def __init__(self, path: Path) -> None:
        with tarfile.open(path) as tar:
            self.names = tar.getnames()
            self.members = {name: self._read(tar, name) for name in self.names if tar.getmember(name).isfile()}

    @staticmethod
    def _read(tar: tarfile.TarFile, name: str) -> bytes:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()

    def json(self, name: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.members[name])
        return document

    def blob(self, descriptor: dict[str, Any]) -> bytes:
        """The blob a descriptor points to, checked against the descriptor's digest and size."""
        algorithm, _, hexdigest = descriptor["digest"].partition(":")
        assert algorithm == "sha256"
        content = self.members[f"blobs/sha256/{hexdigest}"]
        assert hashlib.sha256(content).hexdigest() == hexdigest
        assert len(content) == descriptor["size"]
        return content


def test_an_image_archive_is_an_oci_layout_whose_digests_and_sizes_agree(tmp_path: Path) -> None:
    tree, layer, out = _tree(tmp_path / "rootfs"), tmp_path / "layer.tar", tmp_path / "image.tar"
    write_layer(tree, layer)
    config = ImageConfig(user="65532:65532", env=("PATH=/usr/bin", "HOST_ROOT=/host"), cmd=("/usr/bin/tool",))
    manifest_digest = write_image_archive(out, NAME, layer, config, created_by="test")

    archive = Archive(out)
    assert json.loads(archive.members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = archive.json("index.json")
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == INDEX_MEDIA_TYPE
    [entry] = index["manifests"]
    assert entry["mediaType"] == MANIFEST_MEDIA_TYPE
    assert entry["digest"] == manifest_digest
    assert entry["annotations"] == {IMAGE_NAME_ANNOTATION: NAME}
    assert read_index(out) == index

    manifest = json.loads(archive.blob(entry))
    assert manifest["mediaType"] == MANIFEST_MEDIA_TYPE
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    [layer_descriptor] = manifest["layers"]
    assert layer_descriptor["mediaType"] == LAYER_MEDIA_TYPE
    assert archive.blob(layer_descriptor) == layer.read_bytes()

    image_config = json.loads(archive.blob(manifest["config"]))
    assert image_config["created"] == EPOCH
    assert [entry["created"] for entry in image_config["history"]] == [EPOCH]
    assert image_config["os"] == "linux"
    assert image_config["architecture"] in {"amd64", "arm64"}
    # Uncompressed: the layer's digest is its diff ID.
    assert image_config["rootfs"] == {"type": "layers", "diff_ids": [layer_descriptor["digest"]]}
    assert image_config["config"] == {
        "User": "65532:65532",
        "Env": ["PATH=/usr/bin", "HOST_ROOT=/host"],
        "Cmd": ["/usr/bin/tool"],
    }
    # Every blob in the archive is one that the index reaches, and nothing else is there.
    descriptors = (entry, manifest["config"], *manifest["layers"])
    reached = {f"blobs/sha256/{descriptor['digest'].removeprefix('sha256:')}" for descriptor in descriptors}
    assert {name for name in archive.members if name.startswith("blobs/")} == reached


def test_the_layer_has_numeric_owners_and_the_tree_without_what_the_runtime_mounts(tmp_path: Path) -> None:
    tree, layer = _tree(tmp_path / "rootfs"), tmp_path / "layer.tar"
    write_layer(tree, layer)
    with tarfile.open(layer) as tar:
        members = {member.name.removeprefix("./").rstrip("/"): member for member in tar.getmembers()}
    assert all(member.uname == "" and member.gname == "" for member in members.values())
    assert members["bin"].issym()
    assert members["bin"].linkname == "usr/bin"
    assert members["usr/bin/tool"].mode & 0o777 == 0o755
    assert members["dev"].isdir()
    assert "dev/null" not in members
    if os.geteuid() == 0:
        assert (members["home/nobody/data"].uid, members["home/nobody/data"].gid) == (65532, 65532)
    # Sorted names: the same tree gives the same layer.
    again = tmp_path / "again.tar"
    write_layer(tree, again)
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(layer.read_bytes()).digest()


def test_packing_a_saved_layout_names_its_image_for_containerd_and_keeps_every_blob(tmp_path: Path) -> None:
    tree, layer, saved = _tree(tmp_path / "rootfs"), tmp_path / "layer.tar", tmp_path / "saved.tar"
    write_layer(tree, layer)
    manifest_digest = write_image_archive(saved, "localhost/other:tag", layer, ImageConfig(), created_by="test")
    layout = tmp_path / "layout"
    with tarfile.open(saved) as tar:
        tar.extractall(layout, filter="data")
    # A layout as podman saves it: the name as an OCI ref annotation, which the packer keeps.
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "tag"}
    (layout / "index.json").write_text(json.dumps(index))

    packed = tmp_path / "packed.tar"
    assert pack_layout(layout, NAME, packed) == manifest_digest
    [entry] = read_index(packed)["manifests"]
    assert entry["digest"] == manifest_digest
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "tag", IMAGE_NAME_ANNOTATION: NAME}
    assert Archive(packed).members.keys() - {"index.json"} == Archive(saved).members.keys() - {"index.json"}

    index["manifests"].append(index["manifests"][0])
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="holds 2 images"):
        pack_layout(layout, NAME, packed)


def test_an_interrupted_write_leaves_no_archive(tmp_path: Path) -> None:
    out = tmp_path / "image.tar"
    with pytest.raises(FileNotFoundError):
        write_image_archive(out, NAME, tmp_path / "missing-layer.tar", ImageConfig(), created_by="test")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("short", "qualified"),
    [
        ("falco-operator:0.1.0", "docker.io/library/falco-operator:0.1.0"),
        ("falcosecurity/falco:0.44.1", "docker.io/falcosecurity/falco:0.44.1"),
        ("registry.k8s.io/pause:3.10.1", "registry.k8s.io/pause:3.10.1"),
        ("localhost/falco-operator-base:bookworm", "localhost/falco-operator-base:bookworm"),
        ("127.0.0.1:5000/x:1", "127.0.0.1:5000/x:1"),
    ],
)
def test_image_names_are_qualified_as_containerd_stores_them(short: str, qualified: str) -> None:
    assert fully_qualified(short) == qualified


def test_the_product_image_is_the_one_the_install_manifest_runs() -> None:
    install = (ROOT / "manifests" / "dist" / "install.yaml").read_text()
    values = [line.split(":", 1)[1].strip() for line in install.splitlines() if line.strip().startswith("image:")]
    images = {value for value in values if value}  # the others are schema properties named image
    assert images
    assert {fully_qualified(image) for image in images} == {PRODUCT_IMAGE}


def test_the_digest_naming_a_cached_archive_follows_sources_but_not_bytecode(tmp_path: Path) -> None:
    package = tmp_path / "package"
    (package / "__pycache__").mkdir(parents=True)
    (package / "module.py").write_text("x = 1\n")
    first = inputs_digest("recipe 1", package)
    (package / "__pycache__" / "module.cpython-311.pyc").write_bytes(b"\0")
    assert inputs_digest("recipe 1", package) == first
    assert inputs_digest("recipe 2", package) != first
    (package / "module.py").write_text("x = 2\n")
    assert inputs_digest("recipe 1", package) != first
    (package / "module.py").write_text("x = 1\n")
    shutil.move(package / "module.py", package / "renamed.py")
    assert inputs_digest("recipe 1", package) != first


def test_a_rebuilt_archive_replaces_only_the_older_archives_of_its_own_kind(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    product = cache.archive("falco-operator", PRODUCT_IMAGE, "aaaaaaaaaaaa")
    old_falco, new_falco = (cache.archive("falco", FALCO_IMAGE, digest) for digest in ("bbbbbbbbbbbb", "cccccccccccc"))
    assert new_falco.name == "falco-0.44.1-cccccccccccc.tar"
    for archive in (product, old_falco, new_falco):
        archive.parent.mkdir(parents=True, exist_ok=True)
        archive.write_bytes(b"")
    cache.drop_other_archives(new_falco)
    assert sorted(path.name for path in tmp_path.rglob("*.tar")) == [new_falco.name, product.name]
