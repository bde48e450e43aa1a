"""The rule-set check as the planner and the operator use it: findings become problems of the artifacts whose
files they are in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..yamldoc import Problem
from .incremental import IncrementalCheck
from .ruleset import Finding, LoadContext, RulesFile, check_rule_set

if TYPE_CHECKING:
    from ..model import ArtifactKey, RulesFileView


REMEMBERED = IncrementalCheck(max_bytes=512 * 1024, max_entry=256 * 1024)
"""The groups of files the set check has judged (and their words), up to 512 KiB of their text each."""


def rules_set_check(
    views: Sequence[RulesFileView], context: LoadContext | None = None
) -> Mapping[ArtifactKey, Problem]:
    """The artifacts whose files make the set fail to load, each with its first error. ``context``: what the
    Falco that loads the set provides (plugins, engine version); None: unknown, those checks cannot judge.
    Only the groups of files a change reaches are checked again (``incremental``)."""
    owners = {view.file_name: view.key for view in views}
    findings = REMEMBERED.check([RulesFile(view.file_name, view.items, view.text) for view in views], context)
    problems: dict[ArtifactKey, Problem] = {}
    for finding in findings:
        owner = owners.get(finding.file)
        if finding.severity == "error" and owner is not None and owner not in problems:
            problems[owner] = _problem(finding)
    return problems


def standalone_problem(file_name: str, items: Sequence[Any], text: str | None = None) -> Problem | None:
    """The first error of one rules file checked on its own (references to other files are not judged)."""
    for finding in check_rule_set([RulesFile(file_name, items, text)], standalone=True):
        if finding.severity == "error":
            return _problem(finding)
    return None


def _problem(finding: Finding) -> Problem:
    where = finding.file + (f" line {finding.line}" if finding.line else "")
    where += (", " if finding.line else " ") + f"column {finding.col}" if finding.col else ""
    return Problem(f"{where}: {finding.message}")
