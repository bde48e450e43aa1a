"""What the disk says was last delivered for each artifact, so an agent restarted while an artifact is invalid
keeps that artifact's files instead of dropping them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from falco_operator.api import Config, Plugin, Rulesfile
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
    load_yaml,
    parse_artifact_file_name,
    plugin_library_file_name,
)
from falco_operator.artifacts.yamldoc import plain


def recover_last_good(
    disk: Mapping[str, Mapping[str, bytes]], artifacts: Iterable[Artifact]
) -> dict[ArtifactKey, Delivered]:
    """Files on disk attributed to the artifacts that still exist (by file name; plugins by entry name)."""
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
            library = plugin_library_file_name(key.name)
            if library in disk.get(PLUGINS_DIR, {}):
                files[(PLUGINS_DIR, library)] = disk[PLUGINS_DIR][library]
        delivered = Delivered(files, entry)
        if not delivered.empty:
            result[key] = delivered
    return result


def _plugin_entries(fragment: bytes | None) -> dict[str, dict[str, Any]]:
    if not fragment:
        return {}
    try:
        document = plain(load_yaml(fragment))
    except YamlProblem:
        return {}
    plugins = document.get("plugins") if isinstance(document, dict) else None
    return {str(entry["name"]): entry for entry in plugins or [] if isinstance(entry, dict) and "name" in entry}
