"""Pulled files cached by digest on the agent's volume, so an unchanged digest is never downloaded again, also
across agent restarts.

One file per (digest, artifact type) in a hidden directory, written by rename so a crash never leaves half a file
under a digest's name. Entries no artifact uses any more are removed. Layers being downloaded are streamed into
hidden files of the same directory; those a crash left behind are removed once they are an hour old.
"""

from __future__ import annotations

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

    def get(self, digest: str, label: str) -> bytes | None:
        try:
            return self._path(digest, label).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, digest: str, label: str, data: bytes) -> None:
        path = self._path(digest, label)
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)

    def keep_only(self, entries: Iterable[tuple[str, str]]) -> None:
        """Remove every cached file but those of ``(digest, label)`` pairs."""
        if not self.directory.is_dir():
            return
        wanted = {self._path(digest, label).name for digest, label in entries}
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
