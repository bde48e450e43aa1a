"""Pulled files cached by digest on the agent's volume, so an unchanged digest is never downloaded again, also
across agent restarts.

One file per (digest, artifact type) in a hidden directory, written by rename so a crash never leaves half a file
under a digest's name, and for each source the digest it last resolved to (``resolved``), so that an agent that
restarts while the registry cannot be reached still delivers what it pulled. Entries no artifact uses any more are
removed. Layers being downloaded are streamed into
hidden files of the same directory; those a crash left behind are removed once they are an hour old.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterable
from pathlib import Path

STALE_AFTER = 3600.0
"""Age after which a hidden file (a download or a write in progress) is taken for a crash's leftover."""


class DigestCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, digest: str, label: str) -> Path:
        algorithm, _, hex_digest = digest.partition(":")
        if algorithm != "sha256" or len(hex_digest) != 64 or not all(c in "0123456789abcdef" for c in hex_digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.directory / f"{label}-{hex_digest}"

    def _source_path(self, source: str) -> Path:
        return self.directory / f"source-{hashlib.sha256(source.encode()).hexdigest()}"

    def resolved(self, source: str) -> str | None:
        """The digest ``source`` (a pull's identity: reference, type, credentials) last resolved to, if any."""
        try:
            digest = self._source_path(source).read_text().strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        try:
            self._path(digest, "check")
        except ValueError:
            return None
        return digest

    def remember(self, source: str, digest: str) -> None:
        self._write(self._source_path(source), digest.encode())

    def get(self, digest: str, label: str) -> bytes | None:
        try:
            return self._path(digest, label).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, digest: str, label: str, data: bytes) -> None:
        self._write(self._path(digest, label), data)

    def _write(self, path: Path, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)

    def keep_only(self, entries: Iterable[tuple[str, str]], sources: Iterable[str] = ()) -> None:
        """Remove every cached file but those of ``(digest, label)`` pairs and the resolutions of ``sources``."""
        if not self.directory.is_dir():
            return
        wanted = {self._path(digest, label).name for digest, label in entries}
        wanted |= {self._source_path(source).name for source in sources}
        stale = time.time() - STALE_AFTER
        for entry in self.directory.iterdir():
            # Hidden names are files being written (renamed into place when complete, or removed after a layer
            # download): never touched while they may still be in use.
            if entry.name.startswith("."):
                if _modified(entry) < stale:
                    entry.unlink(missing_ok=True)
            elif entry.name not in wanted:
                entry.unlink(missing_ok=True)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()
