"""Taking the one file an artifact delivers out of its tar.gz layer, refusing anything that could escape.

Nothing is unpacked: only the bytes of one regular file come out of the archive, at most ``max_bytes`` of them,
into memory (``single_file``) or, a chunk at a time, into a file the caller names (``extract_single_file``).
Links, device files, absolute paths and ``..`` components are refused even when they are not the file taken,
because an archive that carries them was not made by a publishing tool and is not trusted at all.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

from ...records import record

MAX_MEMBERS = 256
_CHUNK = 1024 * 1024


class ArchiveRefused(Exception):
    """The layer is not a tar.gz this agent accepts; the message says why."""


@record(frozen=True)
class ArchiveFile:
    name: str
    data: bytes


def single_file(layer: bytes, suffixes: tuple[str, ...], max_bytes: int) -> ArchiveFile:
    """The one regular file whose name ends with one of ``suffixes``; other regular files are ignored.

    ``max_bytes`` caps the uncompressed size of the whole archive, so a small layer cannot expand without bound.
    """
    try:
        with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as archive:
            member, extracted = _take(archive, suffixes, max_bytes)
            data = extracted.read(member.size)  # at most max_bytes: the sizes were summed
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise ArchiveRefused(f"the layer is not a readable tar.gz archive: {error}") from None
    if len(data) != member.size:
        raise ArchiveRefused(f"{member.name} is shorter than the archive says")
    return ArchiveFile(PurePosixPath(member.name).name, data)


def extract_single_file(layer: Path, suffixes: tuple[str, ...], max_bytes: int, destination: Path) -> str:
    """``single_file`` from the layer file into ``destination``, a chunk at a time (never the whole file in
    memory); the file's name in the archive."""
    try:
        with tarfile.open(layer, mode="r:gz") as archive, destination.open("wb") as out:
            member, extracted = _take(archive, suffixes, max_bytes)
            shutil.copyfileobj(extracted, out, _CHUNK)
            written = out.tell()
    except (
        tarfile.TarError,
        gzip.BadGzipFile,
        EOFError,
        zlib.error,
    ) as error:  # not OSError: a full disk is no refusal
        raise ArchiveRefused(f"the layer is not a readable tar.gz archive: {error}") from None
    if written != member.size:
        raise ArchiveRefused(f"{member.name} is shorter than the archive says")
    return PurePosixPath(member.name).name


def _take(archive: tarfile.TarFile, suffixes: tuple[str, ...], max_bytes: int) -> tuple[tarfile.TarInfo, IO[bytes]]:
    matches: list[tarfile.TarInfo] = []
    total = 0
    for count, member in enumerate(archive, start=1):
        if count > MAX_MEMBERS:
            raise ArchiveRefused(f"the archive has more than {MAX_MEMBERS} entries")
        _check_member(member)
        if member.isdir():
            continue
        total += member.size
        if total > max_bytes:
            raise ArchiveRefused(f"the archive expands to more than the {max_bytes}-byte limit")
        if member.name.endswith(suffixes):
            matches.append(member)
    if len(matches) != 1:
        wanted = " or ".join(suffixes)
        found = ", ".join(sorted(member.name for member in matches))
        detail = f" ({found})" if found else ""
        raise ArchiveRefused(f"the archive must hold exactly one {wanted} file; it holds {len(matches)}{detail}")
    member = matches[0]
    extracted = archive.extractfile(member)
    if extracted is None:
        raise ArchiveRefused(f"{member.name} cannot be read from the archive")
    return member, extracted


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    if member.issym() or member.islnk():
        raise ArchiveRefused(f"the archive holds a link ({name} -> {member.linkname}); links are refused")
    if not (member.isfile() or member.isdir()):
        raise ArchiveRefused(f"the archive holds {name}, which is not a regular file or directory")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise ArchiveRefused(f"the archive holds an absolute path ({name})")
    if ".." in path.parts:
        raise ArchiveRefused(f"the archive holds a path that leaves its directory ({name})")
