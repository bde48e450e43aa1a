"""The plugins fragment: every Plugin's entry in Falco's ``plugins`` list, and ``load_plugins``, in one file.

Entries are sorted by name so that every node writes identical bytes. A comment carries the SHA-256 of each
library the agent delivered, so a new library changes this file and Falco reloads (Falco watches config files,
not libraries).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..api import Plugin
from .naming import plugin_library_file_name
from .yamldoc import dump_yaml

HEADER = b"# Written by falco-artifact-agent from the Plugin resources of this Falco.\n"


def plugin_entry(plugin: Plugin, plugins_dir: str) -> dict[str, Any]:
    """The ``plugins`` entry of one Plugin; the default library path is ``<plugins_dir>/<object name>.so``."""
    config = plugin.spec.config
    library = config.library_path if config and config.library_path else None
    entry: dict[str, Any] = {
        "name": plugin.plugin_name,
        "library_path": library or f"{plugins_dir.rstrip('/')}/{plugin_library_file_name(plugin.metadata.name or '')}",
    }
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
