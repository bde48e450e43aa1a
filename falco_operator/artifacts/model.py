"""The values that flow from source resolution through planning to the materializer and the report."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import field
from typing import Any, Literal

from ..records import record
from .naming import Medium

State = Literal["Installed", "Loaded", "Refused", "Invalid", "Failed", "Pending"]
FileRef = tuple[str, str]
"""(directory, file name): the directory is one of ``naming.DIRECTORIES``."""


@record(frozen=True, order=True)
class ArtifactKey:
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@record(frozen=True)
class RulesFileView:
    """One rules file in load order, for checks that need the whole set."""

    key: ArtifactKey
    file_name: str
    items: list[Any]
    text: str | None = None
    """The file's text: positions in messages are then the file's lines and columns."""


@record(frozen=True)
class Content:
    """A source resolved to bytes (``digest``: the OCI digest it came from, for OCI sources)."""

    data: bytes
    digest: str | None = None


@record(frozen=True)
class Unavailable:
    """A source that could not be read: ``Pending`` while it may still come, ``Failed`` when it cannot."""

    state: Literal["Failed", "Pending"]
    reason: str
    message: str
    withdrawn: bool = False
    """The source refused for good the content it resolved to before (``oci.failures``): what was delivered for
    the artifact leaves too, instead of staying as its last good files."""


Resolution = Content | Unavailable
Resolutions = Mapping[tuple[ArtifactKey, Medium], Resolution]


@record(frozen=True)
class Delivered:
    """What is on disk for one artifact: its files and, for a Plugin, its entry in the plugins fragment."""

    files: Mapping[FileRef, bytes] = field(default_factory=dict)
    plugin_entry: Mapping[str, Any] | None = None
    digest: str | None = None

    @property
    def empty(self) -> bool:
        return not self.files and self.plugin_entry is None


EMPTY = Delivered()


@record(frozen=True)
class Outcome:
    """One artifact after planning: its state and what stays on disk for it."""

    key: ArtifactKey
    generation: int | None
    state: State
    delivered: Delivered
    reason: str | None = None
    message: str | None = None

    @property
    def sha256(self) -> str | None:
        """The file's SHA-256 for one file; for several, the SHA-256 of their sorted ``name sha256`` lines."""
        hashes = {name: sha256_hex(data) for (_, name), data in self.delivered.files.items()}
        if not hashes:
            return None
        if len(hashes) == 1:
            return next(iter(hashes.values()))
        listing = "".join(f"{name} {digest}\n" for name, digest in sorted(hashes.items()))
        return sha256_hex(listing.encode())


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
