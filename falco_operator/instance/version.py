"""Image references: which Falco version an image runs, whatever registry or digest it names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageReference:
    repository: str
    tag: str | None
    digest: str | None


def parse_image(image: str) -> ImageReference:
    """Split ``[host[:port]/]path[:tag][@digest]``; a colon before the last slash belongs to the host."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        repository, tag = name[:colon], name[colon + 1 :]
    else:
        repository, tag = name, ""
    return ImageReference(repository, tag or None, digest or None)


def falco_version(user_image: str | None, spec_version: str | None, default_version: str) -> str:
    """The version shown in status: the tag of a user's falco image, else ``spec.version``, else the default.

    An image pinned by digest alone carries no version; then ``spec.version`` or the default is reported.
    """
    if user_image:
        tag = parse_image(user_image).tag
        if tag:
            return tag
    return spec_version or default_version


def reported_version(user_image: str | None, spec_version: str | None, default_version: str) -> str:
    """The version status shows: as ``falco_version``, but an image pinned by digest alone shows its digest
    (its Falco version is not knowable from the reference), never a guessed version."""
    if user_image:
        reference = parse_image(user_image)
        if reference.digest and not reference.tag:
            return reference.digest
    return falco_version(user_image, spec_version, default_version)
