"""Writes a plan's files into the three directories, in an order that never leaves Falco a dangling reference.

Plugin libraries come first (new ones appear, none disappear yet), then config fragments (which load plugins),
then rules (which may require plugins), and last the plugins directory loses the libraries nothing loads any
more. Each step is one atomic generation swap of one directory; a directory whose files did not change is not
touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from falco_operator.artifacts import CONFIG_DIR, PLUGINS_DIR, RULES_DIR
from falco_operator.records import record

from .layout import GenerationDirectory


@record(frozen=True)
class Directories:
    rules: Path
    config: Path
    plugins: Path

    def by_kind(self) -> dict[str, Path]:
        return {RULES_DIR: self.rules, CONFIG_DIR: self.config, PLUGINS_DIR: self.plugins}


class Materializer:
    def __init__(self, directories: Directories) -> None:
        self.directories = directories
        self._layouts = {kind: GenerationDirectory(path) for kind, path in directories.by_kind().items()}

    def read(self) -> dict[str, dict[str, bytes]]:
        """What each directory holds now (adopted at start: the disk is the truth)."""
        return {kind: layout.read() for kind, layout in self._layouts.items()}

    def apply(self, files: Mapping[str, Mapping[str, bytes]]) -> list[str]:
        """Make every directory hold exactly its files; returns the directories swapped, in order."""
        swapped: list[str] = []
        plugins = self._layouts[PLUGINS_DIR]
        wanted_plugins = dict(files.get(PLUGINS_DIR, {}))
        leaving = set(plugins.hashes()) - set(wanted_plugins)
        kept_for_now = {name: data for name, data in plugins.read().items() if name in leaving} if leaving else {}
        steps = [
            (PLUGINS_DIR, kept_for_now | wanted_plugins),
            (CONFIG_DIR, dict(files.get(CONFIG_DIR, {}))),
            (RULES_DIR, dict(files.get(RULES_DIR, {}))),
            (PLUGINS_DIR, wanted_plugins),
        ]
        for kind, wanted in steps:
            if self._layouts[kind].swap(wanted):
                swapped.append(kind)
        return swapped

    def nudge_rules(self) -> None:
        self._layouts[RULES_DIR].nudge()
