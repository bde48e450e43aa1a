"""Pulled files cached by digest on the agent's volume, so an unchanged digest is never downloaded again, also
across agent restarts.

The directory holds, for one agent process (its only writer):

- ``<label>-<hex digest>``: a pulled file (label ``rules`` or ``plugin``) or its artifact's OCI config
  (``config``), written by rename so a crash never leaves half a file under a digest's name;
- ``source-<sha256 of the source>``: the digest a source (reference, type, credentials) last resolved to, so that
  an agent that restarts while the registry cannot be reached still delivers what it pulled; removed when the
  source refuses that content for good (a deleted tag, say: ``forget``), so that no later restart serves it again;
- hidden names: a write in progress (``.<name>.<random>.tmp``, renamed into place when complete) or a download's
  spool directory (``.download-<random>``, holding the layer while it streams in and the file taken out of it).

Pruning (``DigestCache.prune``) keeps exactly what is referenced, whatever state each artifact is in: the files of
every digest a ``CacheUse`` names (with its config), the resolution of every source one names, and the hidden names
this process is writing now. Everything else goes, whether a digest no artifact uses any more or a hidden file an
interrupted download or a crashed process left behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from falco_operator.records import record

log = logging.getLogger("artifact_agent.oci_cache")
CONFIG = "config"
"""The label of an artifact's OCI config (as read, by the artifact's digest)."""
SOURCE = "source"
HIDDEN = "."
_HEX = frozenset("0123456789abcdef")


def entry_name(digest: str, label: str) -> str:
    """The file name of ``digest``'s file of kind ``label``; ValueError for anything but a sha256 digest."""
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm != "sha256" or len(hex_digest) != 64 or not set(hex_digest) <= _HEX:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return f"{label}-{hex_digest}"


def source_name(source: str) -> str:
    return f"{SOURCE}-{hashlib.sha256(source.encode()).hexdigest()}"


@record(frozen=True)
class CacheUse:
    """What one artifact (or one pull not answered yet) needs kept: the files of these digests of kind ``label``
    (each with its config), and what ``source`` last resolved to."""

    label: str
    digests: frozenset[str]
    source: str | None = None


def referenced_names(uses: Iterable[CacheUse]) -> set[str]:
    """The cache's file names ``uses`` reference (a digest that cannot name a file has none to keep)."""
    names: set[str] = set()
    for use in uses:
        if use.source is not None:
            names.add(source_name(use.source))
        for digest in use.digests:
            try:
                names |= {entry_name(digest, use.label), entry_name(digest, CONFIG)}
            except ValueError:
                continue
    return names


def cached_files_to_delete(
    referenced: Collection[str], on_disk: Iterable[str], in_flight: Collection[str]
) -> list[str]:
    """The names in the cache directory to delete: every entry not referenced, and every hidden name (a temporary
    file or spool directory) that is not being written now, which only an interrupted write can have left."""
    return sorted(
        name for name in on_disk
        if (name not in in_flight if name.startswith(HIDDEN) else name not in referenced)
    )  # fmt: skip


class DigestCache:
    """The cache directory, owned by one agent process: it knows which hidden names it is writing, and pruning
    removes any other."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()  # writes run in worker threads, pruning in the event loop

    def resolved(self, source: str) -> str | None:
        """The digest ``source`` (a pull's identity: reference, type, credentials) last resolved to, if any."""
        try:
            digest = (self.directory / source_name(source)).read_text().strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        try:
            entry_name(digest, "check")
        except ValueError:
            return None
        return digest

    def remember(self, source: str, digest: str) -> None:
        self._write(self.directory / source_name(source), digest.encode())

    def forget(self, source: str) -> None:
        """``source`` resolves to nothing any more: the next prune removes its digest's files unless another use
        names them."""
        (self.directory / source_name(source)).unlink(missing_ok=True)

    def get(self, digest: str, label: str) -> bytes | None:
        try:
            return (self.directory / entry_name(digest, label)).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, digest: str, label: str, data: bytes) -> None:
        self._write(self.directory / entry_name(digest, label), data)

    @contextmanager
    def spool(self) -> Iterator[Path]:
        """A new hidden directory for one download's temporary files, never pruned while in use, removed after."""
        path = self.directory / f"{HIDDEN}download-{secrets.token_hex(8)}"
        with self._writing(path.name):
            try:
                path.mkdir(parents=True)
                yield path
            finally:
                shutil.rmtree(path, ignore_errors=True)

    def prune(self, uses: Iterable[CacheUse]) -> list[str]:
        """Delete every name of the directory that ``uses`` do not reference and no write in progress holds;
        returns the names it deleted."""
        referenced = referenced_names(uses)
        try:
            on_disk = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        # Listed first, in flight second: a hidden name listed was registered before it was created, and is only
        # unregistered once it is gone (renamed into place or removed), so a write in progress is never deleted.
        with self._lock:
            in_flight = set(self._in_flight)
        deleted = []
        for name in cached_files_to_delete(referenced, on_disk, in_flight):
            # A hidden name listed may have been renamed into place (or removed) since: then it is gone already.
            path = self.directory / name
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except FileNotFoundError:
                continue
            except OSError as error:  # one entry that cannot go must not keep the others
                log.warning("cannot remove %s from the OCI cache: %s", name, error)
                continue
            deleted.append(name)
        return deleted

    @contextmanager
    def _writing(self, name: str) -> Iterator[None]:
        with self._lock:
            self._in_flight.add(name)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight.discard(name)

    def _write(self, path: Path, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{HIDDEN}{path.name}.{secrets.token_hex(4)}.tmp")
        with self._writing(temporary.name):
            try:
                with temporary.open("wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                temporary.replace(path)
            finally:
                temporary.unlink(missing_ok=True)  # a write that failed (a full disk) leaves nothing
