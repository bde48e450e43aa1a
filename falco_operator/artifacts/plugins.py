"""The plugins fragment: every Plugin's entry in Falco's ``plugins`` list, and ``load_plugins``, in one file.

Entries are sorted by name so that every node writes identical bytes. A comment carries the SHA-256 of each
library the agent delivered, so a new library changes this file and Falco reloads (Falco watches config files,
not libraries); a library the agent delivered is also named after its content, so its entry's ``library_path``
changes with it, and Falco, which does not load a path again, loads it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

from ..api.plain import Plugin
from .naming import plugin_library_file_name
from .yamldoc import dump_yaml

HEADER = b"# Written by falco-artifact-agent from the Plugin resources of this Falco.\n"


FALCO_PLUGINS_DIR = "/usr/share/falco/plugins"
"""Falco's own plugins directory, the image's (the official image ships ``libcontainer.so`` there): where Falco
looks for a relative ``library_path``. Nothing is mounted over it, so the image's plugins stay visible."""

ARTIFACT_PLUGINS_DIR = "/var/lib/falco-artifacts/plugins"
"""Where the agent writes the libraries it delivers from OCI (the agent's default ``--plugins-dir``; the pod
mounts one emptyDir there in the agent and in Falco). A directory of its own, outside ``FALCO_PLUGINS_DIR``: the
emptyDir does not hide the image's plugins, and no mount sits inside a directory of the image."""


def library_file_in(library_path: str, plugins_dir: str) -> str | None:
    """The file of ``plugins_dir`` (where the agent writes delivered libraries) that a Plugin's ``libraryPath``
    names for the library its OCI artifact delivers: a path directly in ``plugins_dir``, or a bare file name
    (``libjson.so``: the user picks the name, the agent's directory holds it); None for any other path and for
    names the layout keeps for itself (``..data``)."""
    directory, name = posixpath.split(library_path)
    if directory and (
        not posixpath.isabs(directory) or posixpath.normpath(directory) != posixpath.normpath(plugins_dir)
    ):
        return None
    return name if name and not name.startswith(".") else None


def delivered_library_file(library_path: str, plugins_dir: str) -> str | None:
    """The file a Plugin with an OCI artifact names for its delivered library: ``library_file_in``, or a path
    directly in ``FALCO_PLUGINS_DIR``, where delivered libraries went before they had a directory of their own
    (the documented form then): such Plugins keep working after an upgrade, their library in the agent's
    directory."""
    named = library_file_in(library_path, plugins_dir)
    directory = posixpath.dirname(library_path)
    if named is None and posixpath.isabs(directory) and posixpath.normpath(directory) == FALCO_PLUGINS_DIR:
        named = library_file_in(posixpath.basename(library_path), plugins_dir)
    return named


def library_file_name(plugin: Plugin, library: bytes, plugins_dir: str) -> str:
    """The name a library delivered from OCI gets in the plugins directory: the one the user's ``libraryPath``
    names there, if any, else one per content (``<object name>-<SHA-256 prefix>.so``)."""
    config = plugin.spec.config
    given = delivered_library_file(config.library_path, plugins_dir) if config and config.library_path else None
    return given or plugin_library_file_name(plugin.metadata.name or "", library)


def plugin_entry(plugin: Plugin, plugins_dir: str, library_file: str | None = None) -> dict[str, Any]:
    """The ``plugins`` entry of one Plugin. Its ``library_path``: the library the agent delivered (``library_file``,
    as an absolute path in ``plugins_dir``) unless the user's ``libraryPath`` names another file; else the user's
    ``libraryPath`` as given (a relative one is Falco's to find in ``FALCO_PLUGINS_DIR``, the image's); else the
    image's ``<FALCO_PLUGINS_DIR>/<object name>.so``."""
    config = plugin.spec.config
    given = config.library_path if config and config.library_path else None
    if library_file is not None and (given is None or delivered_library_file(given, plugins_dir) == library_file):
        library_path = f"{plugins_dir.rstrip('/')}/{library_file}"
    else:
        library_path = given or f"{FALCO_PLUGINS_DIR}/{plugin.metadata.name or ''}.so"
    entry: dict[str, Any] = {"name": plugin.plugin_name, "library_path": library_path}
    if config and config.init_config is not None:
        entry["init_config"] = config.init_config
    if config and config.open_params is not None:
        entry["open_params"] = config.open_params
    return entry


def render_plugins_config(entries: Iterable[Mapping[str, Any]], library_digests: Mapping[str, str]) -> bytes:
    ordered = sorted(entries, key=lambda entry: str(entry["name"]))
    comments = b"".join(
        f"# library {name} sha256:{digest}\n".encode() for name, digest in sorted(library_digests.items()) if digest
    )
    body = dump_yaml({"plugins": ordered, "load_plugins": [entry["name"] for entry in ordered]})
    return HEADER + comments + body
