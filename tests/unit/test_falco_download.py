"""Where the harness finds Falco, and the download path for machines without ../shared/falco (served from local
``file://`` URLs here: this machine has no internet)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from e2e import falco, falco_release
from e2e.falco_release import FalcoDownloadError


def tarball(path: Path, members: dict[str, bytes]) -> str:
    """Write a .tar.gz with ``members`` (name → bytes, executable); its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake download.falco.org with the two archives this machine's arch needs, pinned; an empty cache; no
    FALCO_* variables and no ../shared/falco."""
    arch = falco_release.release_arch()
    site = tmp_path / "site"
    falco_sha = tarball(site / "packages" / "bin" / arch / f"falco-0.44.1-{arch}.tar.gz",
                        {f"falco-0.44.1-{arch}/usr/bin/falco": b"#!/bin/sh\n"})  # fmt: skip
    plugin_sha = tarball(site / "plugins" / "stable" / f"container-0.7.1-linux-{arch}.tar.gz",
                         {"libcontainer.so": b"ELF", "LICENSE": b"Apache-2.0"})  # fmt: skip
    monkeypatch.setattr(falco_release, "DOWNLOADS", site.as_uri())
    monkeypatch.setattr(falco_release, "FALCO_SHA256_BY_ARCH", {arch: falco_sha})
    monkeypatch.setattr(falco_release, "CONTAINER_PLUGIN_SHA256_BY_ARCH", {arch: plugin_sha})
    monkeypatch.setattr(falco, "SHARED_FALCO", tmp_path / "no-shared")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for variable in ("FALCO_BIN", "FALCO_CONTAINER_PLUGIN", "FALCO_SHA256"):
        monkeypatch.delenv(variable, raising=False)
    return site


def test_without_shared_falco_the_release_is_downloaded_once_into_the_cache(release: Path, tmp_path: Path) -> None:
    found = falco.find_falco()
    cache = tmp_path / "cache" / "falco-operator-e2e" / "falco-0.44.1"
    assert found.source == "download"
    assert found.falco.is_relative_to(cache)
    assert found.falco.read_bytes() == b"#!/bin/sh\n"
    assert os.access(found.falco, os.X_OK)
    assert found.container_plugin == cache / f"container-0.7.1-linux-{falco_release.release_arch()}" / "libcontainer.so"
    for archive in release.rglob("*.tar.gz"):
        archive.unlink()  # a second run downloads nothing
    assert falco.find_falco() == found
    assert sorted(path.name for path in cache.iterdir()) == sorted(path.parent.name for path in [
        found.container_plugin, found.falco.parents[2]
    ])  # fmt: skip


def test_an_archive_with_another_checksum_is_refused_and_leaves_nothing(
    release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(falco_release, "FALCO_SHA256_BY_ARCH", {falco_release.release_arch(): "0" * 64})
    with pytest.raises(FalcoDownloadError, match=r"not the pinned 0{64}: it was not unpacked\. Set FALCO_BIN"):
        falco.find_falco()
    assert list((tmp_path / "cache" / "falco-operator-e2e" / "falco-0.44.1").iterdir()) == []


def test_without_a_pinned_checksum_nothing_is_downloaded_and_falco_bin_is_asked_for(
    release: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(falco_release, "FALCO_SHA256_BY_ARCH", {})
    with pytest.raises(FalcoDownloadError, match=r"no SHA-256 is pinned for falco-0\.44\.1-.*set FALCO_BIN"):
        falco.find_falco()


def test_falco_sha256_stands_in_for_a_missing_pin(release: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = falco_release.FALCO_SHA256_BY_ARCH
    monkeypatch.setattr(falco_release, "FALCO_SHA256_BY_ARCH", {})
    monkeypatch.setenv("FALCO_SHA256", next(iter(pinned.values())) or "")
    assert falco.find_falco().source == "download"


def test_an_unreachable_site_says_to_set_falco_bin(release: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(falco_release, "DOWNLOADS", (release / "missing").as_uri())
    with pytest.raises(FalcoDownloadError, match=r"cannot download .*set FALCO_BIN and FALCO_CONTAINER_PLUGIN"):
        falco.find_falco()


def test_falco_bin_and_falco_container_plugin_come_first(
    release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary, plugin = tmp_path / "my-falco", tmp_path / "my-libcontainer.so"
    binary.write_bytes(b"")
    plugin.write_bytes(b"")
    monkeypatch.setenv("FALCO_BIN", str(binary))
    monkeypatch.setenv("FALCO_CONTAINER_PLUGIN", str(plugin))
    assert falco.find_falco() == falco.FalcoBinaries(binary, plugin, "FALCO_BIN")
    monkeypatch.delenv("FALCO_CONTAINER_PLUGIN")  # the plugin alone is then downloaded
    assert falco.find_falco().container_plugin.name == "libcontainer.so"
    monkeypatch.setenv("FALCO_BIN", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"FALCO_BIN=.*nowhere: no such file"):
        falco.find_falco()


def test_the_shared_build_is_used_when_the_checkout_has_it(
    release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared" / "falco"
    for path in (shared / "bin" / "falco", shared / "plugins" / "libcontainer.so"):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    monkeypatch.setattr(falco, "SHARED_FALCO", shared)
    found = falco.find_falco()
    assert found == falco.FalcoBinaries(shared / "bin" / "falco", shared / "plugins" / "libcontainer.so", "shared")
    assert not (tmp_path / "cache").exists()
