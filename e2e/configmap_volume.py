"""A directory written the way the kubelet writes a ConfigMap volume, for tests of what Falco makes of it.

Real files live in a hidden generation directory ``..<timestamp>/``; ``..data`` is a symlink to it; every visible
name is a symlink ``NAME -> ..data/NAME``. A new set of files is published as the kubelet's atomic writer does:
write the new generation, point a new ``..data_tmp`` symlink at it, ``rename("..data_tmp", "..data")``, then create
the visible links of names that are new, remove those of names that left, and remove the old generation.

Deliberately independent of the agent's own materializer: tests of Falco pin Falco's behaviour over the layout
Kubernetes itself produces, and the agent is then tested against those facts.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

DATA = "..data"
DATA_TMP = "..data_tmp"
_sequence = itertools.count()


def sha256s(files: Mapping[str, bytes]) -> dict[str, str]:
    """``{name: sha256}``, as Falco reports loaded rules files in its metrics."""
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


class ConfigMapVolume:
    def __init__(self, path: Path) -> None:
        self.path = path

    def generation(self) -> Path | None:
        """The current hidden generation directory (``..data``'s target), None before the first write."""
        link = self.path / DATA
        return self.path / os.readlink(link) if link.is_symlink() else None

    def visible(self) -> dict[str, bytes]:
        """What a reader sees through the visible names (dangling links skipped)."""
        if not self.path.is_dir():
            return {}
        return {entry.name: entry.read_bytes() for entry in sorted(self.path.iterdir())
                if not entry.name.startswith(".") and entry.is_file()}  # fmt: skip

    def write(self, files: Mapping[str, bytes]) -> Path:
        """Publish ``files`` as the next generation, in the kubelet's order; the new generation directory."""
        for name in files:
            if not name or name.startswith(".") or "/" in name:
                raise ValueError(f"{name!r} is not a visible file name")
        self.path.mkdir(parents=True, exist_ok=True)
        old = self.generation()
        old_names = {
            entry.name for entry in self.path.iterdir() if not entry.name.startswith(".") and entry.is_symlink()
        }
        stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
        generation = self.path / f"..{stamp}.{os.getpid()}{next(_sequence):06d}"
        generation.mkdir()
        for name, data in files.items():
            (generation / name).write_bytes(data)
        staging = self.path / DATA_TMP
        os.symlink(generation.name, staging)
        os.rename(staging, self.path / DATA)
        for name in sorted(set(files) - old_names):
            os.symlink(f"{DATA}/{name}", self.path / name)
        for name in sorted(old_names - set(files)):
            (self.path / name).unlink()
        if old is not None and old != generation:
            shutil.rmtree(old)
        return generation
