"""One directory in the layout Kubernetes uses for ConfigMap volumes, changed one atomic generation at a time.

Real files live in a hidden ``..<timestamp>`` directory; ``..data`` is a symlink to it; each visible name is a
symlink ``NAME -> ..data/NAME``. A new set of files is written into a new hidden directory and published by one
``rename("..data_tmp", "..data")``, so a reader (Falco) sees the old set or the new one, never a mix: links of
new names are made before the rename (dangling until it) and links of removed names are dropped after it. Files whose
bytes did not change are hard-linked from the previous generation, not rewritten.
"""

from __future__ import annotations

import contextlib
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
        self._root = os.fspath(path)
        """The directory as a string: the swap joins names to it with ``os.path`` (pathlib's joins cost more than
        the system calls they name)."""
        self._hashes: dict[str, str] | None = None
        """SHA-256 of every file of the current generation, read from disk once, then kept in step."""

    def current_generation(self) -> Path | None:
        name = self._current_name()
        return self.path / name if name is not None else None

    def _current_name(self) -> str | None:
        """The name of the generation ``..data`` points to, when it is a directory."""
        try:
            target = os.readlink(os.path.join(self._root, DATA))
        except OSError:  # absent, or not a symlink
            return None
        return target if os.path.isdir(os.path.join(self._root, target)) else None

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
        return self._is_current({name: _sha256(data) for name, data in files.items()})

    def _is_current(self, hashes: Mapping[str, str]) -> bool:
        if self.hashes() != hashes:
            return False
        visible, hidden = self._entries()
        return visible == set(hashes) and not self._strays(hidden)

    def swap(self, files: Mapping[str, bytes]) -> bool:
        """Make the directory hold exactly ``files`` in one atomic step; False when it already did."""
        for name in files:
            if name.startswith(".") or "/" in name or not name:
                raise ValueError(f"{name!r} is not a plain visible file name")
        hashes = {name: _sha256(data) for name, data in files.items()}
        if self._is_current(hashes):
            return False
        root = self._root
        os.makedirs(root, exist_ok=True)
        previous = self._current_name()
        previous_hashes = self.hashes()
        generation = self._new_generation_name()
        generation_path = os.path.join(root, generation)
        os.mkdir(generation_path, 0o755)
        previous_path = os.path.join(root, previous) if previous else None
        for name, data in files.items():
            unchanged = previous_path is not None and previous_hashes.get(name) == hashes[name]
            _place(os.path.join(generation_path, name), data,
                   os.path.join(previous_path, name) if unchanged and previous_path else None)  # fmt: skip
        _fsync_directory(generation_path)
        # New names are linked before the swap: until it, they dangle, and a reader skips a dangling link; at the
        # rename every new name and every new content appear together. Names that leave dangle after it.
        self._link_names(set(files))
        staging = os.path.join(root, DATA_TMP)
        if os.path.lexists(staging):
            os.unlink(staging)
        os.symlink(generation, staging)
        os.rename(staging, os.path.join(root, DATA))
        self._hashes = hashes
        visible, hidden = self._entries()
        for stale in visible - set(files):
            _remove(os.path.join(root, stale))
        for stray in self._strays(hidden, generation):
            _remove(os.path.join(root, stray))
        _fsync_directory(root)
        return True

    def nudge(self) -> None:
        """A change that loads nothing (an empty hidden directory made and removed), so a watcher reads again."""
        marker = self.path / "..nudge"
        marker.mkdir(exist_ok=True)
        marker.rmdir()

    def _new_generation_name(self) -> str:
        stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
        return f"..{stamp}.{secrets.token_hex(4)}"

    def _entries(self) -> tuple[set[str], set[str]]:
        """The visible names and the hidden ones (``..``) in the directory: one read of it."""
        try:
            names = os.listdir(self._root)
        except (FileNotFoundError, NotADirectoryError):
            return set(), set()
        visible = {name for name in names if not name.startswith("..")}
        return visible, set(names) - visible

    def _link_names(self, names: set[str]) -> None:
        root = self._root
        for name in sorted(names):
            link = os.path.join(root, name)
            wanted = f"{DATA}/{name}"
            if _link_target(link) == wanted:
                continue
            temporary = os.path.join(root, f"..{name}.tmp")
            if os.path.lexists(temporary):
                os.unlink(temporary)
            os.symlink(wanted, temporary)
            os.rename(temporary, link)

    def _strays(self, hidden: set[str], current: str | None = None) -> list[str]:
        """Hidden entries that are neither ``..data``, the generation it points to, nor the agent's own."""
        if not hidden:
            return []
        current = current or self._current_name()
        return sorted(name for name in hidden if name != DATA and name not in PRESERVED and name != current)


def _place(target: str, data: bytes, unchanged_source: str | None) -> None:
    if unchanged_source is not None:
        try:
            os.link(unchanged_source, target)
            return
        except OSError:
            pass  # another file system or no hard links: write the bytes instead
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fchmod(descriptor, 0o644)  # whatever the umask
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _link_target(path: str) -> str | None:
    """Where a symlink points; None when the path is no symlink or absent (one system call, not two)."""
    try:
        return os.readlink(path)
    except OSError:
        return None


def _remove(entry: str) -> None:
    if os.path.isdir(entry) and not os.path.islink(entry):
        _remove_generation(entry)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry)


def _remove_generation(directory: str) -> None:
    """A generation holds plain files only: unlinked one by one; anything else (a directory someone made there)
    falls back to removing the whole tree."""
    try:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)
    except OSError:
        shutil.rmtree(directory, ignore_errors=True)


def _fsync_directory(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
