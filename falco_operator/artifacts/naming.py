"""Where each artifact's files go and what they are called.

A file is named ``PP-SS-<name>-<medium>.yaml``: ``PP`` is the artifact's priority (00-99), ``SS`` the
sub-priority of its source within the artifact (OCI 01, ConfigMap 02, inline 03), so that a directory listed
in lexicographic order, as Falco loads it, gives priority order first and source order second.

A plugin library is named after its content, ``<name>-<first 12 hex digits of its SHA-256>.so``: a running Falco
does not load a library again from a path it loaded before (it keeps the old one across its restarts), so a new
library must come under a new name to be loaded.
"""

from __future__ import annotations

import functools
import hashlib
import re
from enum import Enum

from ..records import record

RULES_DIR = "rules"
CONFIG_DIR = "config"
PLUGINS_DIR = "plugins"
DIRECTORIES = (PLUGINS_DIR, CONFIG_DIR, RULES_DIR)
"""The three directories the agent owns, in the order a change is written: a plugin library exists before the
config that loads it, and both before the rules that need them."""

PLUGINS_CONFIG_FILE = "99-03-plugins-config-inline.yaml"
"""The one config fragment that lists every plugin (``plugins`` and ``load_plugins``)."""
DEFAULT_RULES_CONFIG_FILE = "99-03-image-rules-replaced-inline.yaml"
"""The config fragment that leaves the image's default rules file out of ``rules_files`` while a Rulesfile delivers
Falco's default rules from OCI (``image_defaults``)."""
AGENT_CONFIG_FILES = (PLUGINS_CONFIG_FILE, DEFAULT_RULES_CONFIG_FILE)
"""The config fragments the agent writes itself: no Config's file may take their names."""


class Medium(Enum):
    OCI = ("oci", 1)
    CONFIGMAP = ("configmap", 2)
    INLINE = ("inline", 3)

    def __init__(self, label: str, sub_priority: int) -> None:
        # Plain attributes: an Enum's ``value`` goes through a descriptor, and every pass names every file.
        self.label = label
        self.sub_priority = sub_priority


_FILE = re.compile(r"^(?P<priority>\d{2})-(?P<sub>\d{2})-(?P<name>.+)-(?P<medium>oci|configmap|inline)\.yaml$")


def artifact_file_name(priority: int, name: str, medium: Medium) -> str:
    if not 0 <= priority <= 99:
        raise ValueError(f"priority {priority} is outside 0-99")
    return f"{priority:02d}-{medium.sub_priority:02d}-{name}-{medium.label}.yaml"


_BY_LABEL = {medium.label: medium for medium in Medium}


@record(frozen=True)
class ParsedFileName:
    priority: int
    name: str
    medium: Medium


@functools.lru_cache(maxsize=4096)
def parse_artifact_file_name(file_name: str) -> ParsedFileName | None:
    """The parts of a name made by ``artifact_file_name``; None for any other name (remembered: a pass reads the
    names of every file it writes)."""
    match = _FILE.match(file_name)
    if not match or file_name in AGENT_CONFIG_FILES:
        return None
    medium = _BY_LABEL[match["medium"]]
    if int(match["sub"]) != medium.sub_priority:
        return None
    return ParsedFileName(int(match["priority"]), match["name"], medium)


LIBRARY_DIGEST_LENGTH = 12
"""Hex digits of the library's SHA-256 in its file name."""
_LIBRARY = re.compile(rf"^(?P<name>.+)-(?P<digest>[0-9a-f]{{{LIBRARY_DIGEST_LENGTH}}})\.so$")


def plugin_library_file_name(name: str, library: bytes) -> str:
    """``<name>-<first 12 hex digits of the library's SHA-256>.so``: one name per content."""
    return f"{name}-{hashlib.sha256(library).hexdigest()[:LIBRARY_DIGEST_LENGTH]}.so"


@record(frozen=True)
class ParsedLibraryName:
    name: str
    digest_prefix: str

    def names(self, library: bytes) -> bool:
        """Whether this name was made for these bytes."""
        return hashlib.sha256(library).hexdigest().startswith(self.digest_prefix)


def parse_plugin_library_file_name(file_name: str) -> ParsedLibraryName | None:
    """The parts of a name made by ``plugin_library_file_name``; None for any other name."""
    match = _LIBRARY.match(file_name)
    return ParsedLibraryName(match["name"], match["digest"]) if match else None
