"""What the disk says was last delivered for each artifact, so an agent restarted while an artifact is invalid
keeps that artifact's files instead of dropping them.

A Plugin's library is the file its entry in the plugins fragment names, else the one library named after that
Plugin and its content (``<name>-<SHA-256 prefix>.so``); any other library on disk (one a crash left between the
swaps of one pass, one of a deleted Plugin) is an orphan: the next swap leaves it out."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

from falco_operator.api.plain import Config, Plugin, Rulesfile
from falco_operator.artifacts import (
    CONFIG_DIR,
    PLUGINS_CONFIG_FILE,
    PLUGINS_DIR,
    RULES_DIR,
    Artifact,
    ArtifactKey,
    Delivered,
    FileRef,
    YamlProblem,
    artifact_key,
    library_file_in,
    load_yaml,
    parse_artifact_file_name,
    parse_plugin_library_file_name,
)
from falco_operator.artifacts.yamldoc import plain


def recover_last_good(
    disk: Mapping[str, Mapping[str, bytes]], artifacts: Iterable[Artifact], plugins_dir: str
) -> dict[ArtifactKey, Delivered]:
    """Files on disk attributed to the artifacts that still exist (by file name; plugins by entry name, their
    libraries by the entry's ``library_path`` when it is a path in ``plugins_dir``, or by file name)."""
    entries = _plugin_entries(disk.get(CONFIG_DIR, {}).get(PLUGINS_CONFIG_FILE))
    result: dict[ArtifactKey, Delivered] = {}
    for artifact in artifacts:
        key = artifact_key(artifact)
        files: dict[FileRef, bytes] = {}
        entry = None
        if isinstance(artifact, (Rulesfile, Config)):
            directory = RULES_DIR if isinstance(artifact, Rulesfile) else CONFIG_DIR
            for name, data in disk.get(directory, {}).items():
                parsed = parse_artifact_file_name(name)
                if parsed and parsed.name == key.name:
                    files[(directory, name)] = data
        elif isinstance(artifact, Plugin):
            entry = entries.get(artifact.plugin_name)
            library = _library(key.name, entry, disk.get(PLUGINS_DIR, {}), plugins_dir)
            if library is not None:
                files[(PLUGINS_DIR, library)] = disk[PLUGINS_DIR][library]
        delivered = Delivered(files, entry)
        if not delivered.empty:
            result[key] = delivered
    return result


def _library(
    name: str, entry: Mapping[str, Any] | None, libraries: Mapping[str, bytes], plugins_dir: str
) -> str | None:
    library_path = str(entry.get("library_path", "")) if entry else ""
    # The entry of a delivered library is an absolute path in plugins_dir; a relative one is the image's library.
    named = library_file_in(library_path, plugins_dir) if posixpath.isabs(library_path) else None
    if named in libraries:
        return named
    own = [
        file for file, data in libraries.items()
        if (parsed := parse_plugin_library_file_name(file)) and parsed.name == name and parsed.names(data)
    ]  # fmt: skip
    return own[0] if len(own) == 1 else None


def _plugin_entries(fragment: bytes | None) -> dict[str, dict[str, Any]]:
    if not fragment:
        return {}
    try:
        document = plain(load_yaml(fragment))
    except YamlProblem:
        return {}
    plugins = document.get("plugins") if isinstance(document, dict) else None
    return {str(entry["name"]): entry for entry in plugins or [] if isinstance(entry, dict) and "name" in entry}
