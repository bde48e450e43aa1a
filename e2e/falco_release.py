"""The official Falco release, for machines without ``../shared/falco``: downloaded once into the user's cache.

Every archive is checked against a SHA-256 pinned here before anything in it is used; an archive without a pin
is not downloaded at all (set ``FALCO_BIN`` instead, or ``FALCO_SHA256`` with a checksum you verified yourself).

- Falco: ``https://download.falco.org/packages/bin/<arch>/falco-<version>-<arch>.tar.gz``. The Falco project
  publishes a GPG signature (``.asc``) beside it and no checksum file, so the pin comes from outside it (see
  ``FALCO_SHA256_BY_ARCH``).
- The container plugin: ``https://download.falco.org/plugins/stable/container-<version>-linux-<arch>.tar.gz``,
  pinned with the checksums Falco's own build pins for the same plugin version (``CMakeLists.txt`` of Falco
  0.44.1, ``CONTAINER_HASH``).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

FALCO_VERSION = "0.44.1"
CONTAINER_PLUGIN_VERSION = "0.7.1"
DOWNLOADS = "https://download.falco.org"

# falco-0.44.1-x86_64.tar.gz: the SHA-256 recorded by a public third-party report that downloaded it from
# download.falco.org; not confirmed from this project's CI (it has no internet). A mismatch stops with a message,
# never runs the file. No pin is known for aarch64: the download path refuses it and asks for FALCO_BIN.
FALCO_SHA256_BY_ARCH: dict[str, str | None] = {
    "x86_64": "bc5b7a3bdf26fc91e520fc20b3461613c6e725148437121697a8d20243132127",
    "aarch64": None,
}
# container-0.7.1-linux-<arch>.tar.gz, as pinned by Falco 0.44.1's CMakeLists.txt.
CONTAINER_PLUGIN_SHA256_BY_ARCH: dict[str, str | None] = {
    "x86_64": "6962a5081b038b6b01664ebfd4f2a8a48ca3a23961a3581ab31add8542fabfd0",
    "aarch64": "e28310f10698ae0eed42ef9e5720883f3fb76b8d41423596427c75ecbd4a2d55",
}
_ARCH_ALIASES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}
_COMPLETE = ".complete"


class FalcoDownloadError(RuntimeError):
    pass


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/falco-operator-e2e/falco-<version>/`` (``~/.cache`` when ``XDG_CACHE_HOME`` is unset)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "falco-operator-e2e" / f"falco-{FALCO_VERSION}"


def release_arch() -> str:
    machine = platform.machine().lower()
    arch = _ARCH_ALIASES.get(machine)
    if arch is None:
        raise FalcoDownloadError(f"Falco publishes no release for {machine!r}; set FALCO_BIN to a Falco binary")
    return arch


def falco_release_binary() -> Path:
    """``bin/falco`` of the official release tarball, downloaded and verified on first use."""
    arch = release_arch()
    archive = f"falco-{FALCO_VERSION}-{arch}.tar.gz"
    expected = os.environ.get("FALCO_SHA256") or FALCO_SHA256_BY_ARCH.get(arch)
    if not expected:
        raise FalcoDownloadError(
            f"no SHA-256 is pinned for {archive}, so it is not downloaded: set FALCO_BIN to a Falco {FALCO_VERSION}"
            f" binary (and FALCO_CONTAINER_PLUGIN to libcontainer.so), or FALCO_SHA256 to the checksum of {archive}"
            " that you verified (its GPG signature is published beside it)"
        )
    unpacked = fetch_verified(f"{DOWNLOADS}/packages/bin/{arch}/{archive}", expected, cache_dir() / archive[:-7])
    return _one(unpacked, "bin/falco", archive)


def container_plugin_release() -> Path:
    """``libcontainer.so`` of the container plugin release, downloaded and verified on first use."""
    arch = release_arch()
    archive = f"container-{CONTAINER_PLUGIN_VERSION}-linux-{arch}.tar.gz"
    expected = CONTAINER_PLUGIN_SHA256_BY_ARCH.get(arch)
    if not expected:
        raise FalcoDownloadError(f"no SHA-256 is pinned for {archive}; set FALCO_CONTAINER_PLUGIN to libcontainer.so")
    unpacked = fetch_verified(f"{DOWNLOADS}/plugins/stable/{archive}", expected, cache_dir() / archive[:-7])
    return _one(unpacked, "libcontainer.so", archive)


def fetch_verified(url: str, sha256: str, into: Path) -> Path:
    """Unpack the tarball at ``url`` into ``into`` once its SHA-256 is ``sha256``; reuse ``into`` afterwards.

    The archive is streamed to a temporary file and hashed; only a verified archive is unpacked (into a temporary
    directory renamed into place), so an interrupted or concurrent run never leaves a half-made directory behind.
    """
    if (into / _COMPLETE).is_file():
        return into
    into.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=into.parent, prefix=f".{into.name}-") as scratch:
        archive = Path(scratch) / "archive.tar.gz"
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as file:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    file.write(chunk)
        except OSError as error:
            raise FalcoDownloadError(
                f"cannot download {url} ({error}); without internet, set FALCO_BIN and FALCO_CONTAINER_PLUGIN"
            ) from None
        if digest.hexdigest() != sha256.lower():
            raise FalcoDownloadError(
                f"{url} has SHA-256 {digest.hexdigest()}, not the pinned {sha256}: it was not unpacked. Set FALCO_BIN"
                " (and FALCO_CONTAINER_PLUGIN) to binaries you trust"
            )
        unpacked = Path(scratch) / "unpacked"
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")
        (unpacked / _COMPLETE).write_text(f"{url}\nsha256 {sha256}\n")
        try:
            unpacked.rename(into)
        except OSError:
            if not (into / _COMPLETE).is_file():  # not a concurrent run that finished first
                shutil.rmtree(into, ignore_errors=True)
                unpacked.rename(into)
    return into


def _one(directory: Path, suffix: str, archive: str) -> Path:
    name = suffix.rsplit("/", 1)[-1]
    found = sorted(path for path in directory.rglob(name) if path.as_posix().endswith("/" + suffix) and path.is_file())
    if not found:
        raise FalcoDownloadError(f"{archive} (unpacked in {directory}) has no {suffix}; set FALCO_BIN instead")
    return found[0]
