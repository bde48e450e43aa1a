"""One directory in the layout Kubernetes uses for ConfigMap volumes, changed one atomic generation at a time.

Real files live in a hidden ``..<timestamp>`` directory; ``..data`` is a symlink to it; each visible name is a
symlink ``NAME -> ..data/NAME``. A new set of files is written into a new hidden directory and published by one
``rename("..data_tmp", "..data")``, so a reader (Falco) sees the old set or the new one, never a mix: links of
new names are made before the rename (dangling until it) and links of removed names are dropped after it. Files whose
bytes did not change are hard-linked from the previous generation, not rewritten.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

DATA = "..data"
DATA_TMP = "..data_tmp"
PRESERVED = frozenset({"..oci-cache"})
"""Hidden entries that belong to the agent, not to a generation (the OCI digest cache in the plugins volume)."""


class GenerationDirectory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._hashes: dict[str, str] | None = None
        """SHA-256 of every file of the current generation, read from disk once, then kept in step."""

    def current_generation(self) -> Path | None:
        target = self.path / DATA
        if not target.is_symlink():
            return None
        generation = self.path / os.readlink(target)
        return generation if generation.is_dir() else None

    def read(self) -> dict[str, bytes]:
        """The visible files of the current generation (name → bytes); empty when there is none."""
        generation = self.current_generation()
        if generation is None:
            return {}
        return {entry.name: entry.read_bytes() for entry in sorted(generation.iterdir()) if entry.is_file()}

    def hashes(self) -> dict[str, str]:
        if self._hashes is None:
            self._hashes = {name: _sha256(data) for name, data in self.read().items()}
        return dict(self._hashes)

    def is_current(self, files: Mapping[str, bytes]) -> bool:
        """Whether the directory already holds exactly ``files``, with nothing stray beside them."""
        if self.hashes() != {name: _sha256(data) for name, data in files.items()}:
            return False
        return self._visible_entries() == set(files) and not self._stray_generations()

    def swap(self, files: Mapping[str, bytes]) -> bool:
        """Make the directory hold exactly ``files`` in one atomic step; False when it already did."""
        for name in files:
            if name.startswith(".") or "/" in name or not name:
                raise ValueError(f"{name!r} is not a plain visible file name")
        if self.is_current(files):
            return False
        self.path.mkdir(parents=True, exist_ok=True)
        previous = self.current_generation()
        previous_hashes = self.hashes()
        generation = self._new_generation_path()
        generation.mkdir(mode=0o755)
        hashes: dict[str, str] = {}
        for name, data in files.items():
            hashes[name] = _sha256(data)
            _place(generation / name, data, previous / name if previous and previous_hashes.get(name) == hashes[name]
                   else None)  # fmt: skip
        _fsync_directory(generation)
        # New names are linked before the swap: until it, they dangle, and a reader skips a dangling link; at the
        # rename every new name and every new content appear together. Names that leave dangle after it.
        self._link_names(set(files))
        staging = self.path / DATA_TMP
        if staging.is_symlink() or staging.exists():
            staging.unlink()
        os.symlink(generation.name, staging)
        os.rename(staging, self.path / DATA)
        self._hashes = hashes
        for stale in self._visible_entries() - set(files):
            _remove(self.path / stale)
        for stray in self._stray_generations():
            _remove(stray)
        _fsync_directory(self.path)
        return True

    def nudge(self) -> None:
        """A change that loads nothing (an empty hidden directory made and removed), so a watcher reads again."""
        marker = self.path / "..nudge"
        marker.mkdir(exist_ok=True)
        marker.rmdir()

    def _new_generation_path(self) -> Path:
        stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
        return self.path / f"..{stamp}.{secrets.token_hex(4)}"

    def _visible_entries(self) -> set[str]:
        if not self.path.is_dir():
            return set()
        return {entry.name for entry in self.path.iterdir() if not entry.name.startswith("..")}

    def _link_names(self, names: set[str]) -> None:
        for name in sorted(names):
            link = self.path / name
            wanted = f"{DATA}/{name}"
            if link.is_symlink() and os.readlink(link) == wanted:
                continue
            temporary = self.path / f"..{name}.tmp"
            if temporary.is_symlink() or temporary.exists():
                temporary.unlink()
            os.symlink(wanted, temporary)
            os.rename(temporary, link)

    def _stray_generations(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        current = self.current_generation()
        return [
            entry
            for entry in self.path.iterdir()
            if entry.name.startswith("..") and entry.name != DATA and entry.name not in PRESERVED and entry != current
        ]


def _place(target: Path, data: bytes, unchanged_source: Path | None) -> None:
    if unchanged_source is not None:
        try:
            os.link(unchanged_source, target)
            return
        except OSError:
            pass  # another file system or no hard links: write the bytes instead
    with target.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    target.chmod(0o644)


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
