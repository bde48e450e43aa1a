"""What a Falco with ``spec.imageDefaults: true`` loads from its image besides the agent's files.

Its falco.yaml lists the image's default rules file first (``/etc/falco/falco_rules.yaml``, then ``rules.d``),
and the agent's plugins fragment always configures the image's container plugin (``libcontainer.so`` in Falco's
own plugins directory), unless a Plugin of this Falco configures a plugin named ``container``: the user's entry
replaces the image's. The agent reads a copy of the image's rules file (``--image-defaults-dir``) so the set
checks judge every set as Falco loads it: after that file, with the container plugin loaded. The agent never
writes or withholds that file.

A Rulesfile delivering Falco's own default rules from OCI (the artifact config's ``name`` is ``falco-rules``)
replaces the image's copy: the agent then writes ``DEFAULT_RULES_CONFIG_FILE``, a config fragment whose
``rules_files`` leaves the image's file out, and the checks leave it out too. Falco appends a fragment's lists
unless falco.yaml's ``config_files`` lists that file with ``strategy: override`` (Falco 0.44.1): the operator's
falco.yaml must, or Falco loads the image's file and ``rules.d`` twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..records import record
from .model import ArtifactKey, sha256_hex
from .naming import DEFAULT_RULES_CONFIG_FILE as DEFAULT_RULES_CONFIG_FILE
from .rules import RulesFile
from .validation import Invalid, parse_rules
from .yamldoc import dump_yaml

log = logging.getLogger(__name__)

CONTAINER_PLUGIN = "container"
CONTAINER_ENTRY: Mapping[str, Any] = {
    "name": CONTAINER_PLUGIN,
    "library_path": "libcontainer.so",
    "init_config": {"label_max_len": 100, "with_size": False},
}
"""The image's container plugin, as the plugins fragment configures it (a relative path: Falco's plugins dir)."""

IMAGE_RULES_FILE_NAME = "falco_rules.yaml"
IMAGE_RULES_PATH = f"/etc/falco/{IMAGE_RULES_FILE_NAME}"
"""Where Falco reads the image's default rules (first in ``rules_files``); the name the checks give the file."""
RULES_DIRECTORY_PATH = "/etc/falco/rules.d"
DEFAULT_RULES_ARTIFACT = "falco-rules"
"""falcoctl's config ``name`` of Falco's default ruleset."""
DEFAULT_RULES_CONFIG = b"# Written by falco-artifact-agent: a Rulesfile delivers Falco's default rules from OCI.\n" + (
    dump_yaml({"rules_files": [RULES_DIRECTORY_PATH]})
)


@record(frozen=True)
class ImageDefaults:
    """The image's defaults this agent's Falco loads: its default rules file (None: absent or unreadable) and the
    SHA-256 of its bytes (what Falco's rules metric says of ``falco_rules.yaml``)."""

    rules: RulesFile | None = None
    rules_sha256: str | None = None

    @classmethod
    def read(cls, directory: Path) -> ImageDefaults:
        """The defaults found in ``directory`` (the copy of the image's files); a missing or broken rules file
        is left out (Falco reports its own file's problems), with a warning."""
        path = directory / IMAGE_RULES_FILE_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cls()
        except OSError as error:
            log.warning("cannot read the image's rules file %s: %s", path, error)
            return cls()
        try:
            items = parse_rules(data)
        except Invalid as invalid:
            log.warning("the image's rules file %s is not valid rules: %s", path, invalid.problem)
            return cls()
        return cls(RulesFile(IMAGE_RULES_PATH, items, data.decode(errors="replace")), sha256_hex(data))


@record(frozen=True)
class ImageDefaultsInUse:
    """What a pass leaves Falco loading from its image: the image's rules file unless ``rules_replaced_by`` (a
    Rulesfile delivering ``falco-rules`` from OCI), its container plugin unless ``plugin_replaced_by`` (a Plugin
    whose entry is named ``container``)."""

    rules_sha256: str | None
    """Of the agent's copy of the image's rules file; None: the copy is missing or not valid rules."""
    rules_replaced_by: ArtifactKey | None = None
    plugin_replaced_by: ArtifactKey | None = None


def with_container_plugin(entries: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The plugins fragment's entries with the image's container plugin, unless one named ``container`` is there."""
    if any(str(entry.get("name")) == CONTAINER_PLUGIN for entry in entries):
        return entries
    return [*entries, CONTAINER_ENTRY]
