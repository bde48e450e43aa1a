"""The set invariant: what one swap writes is a rules set Falco loads, with the plugins the same set configures.

Planning first decides each artifact on its own (new content, or its last good files when the new content cannot
be used). This module then makes the whole set hold, as Falco loads it: every rules file in load order, and after
each file the rules collected so far compiled (Falco compiles after every file, so a rule may not use a macro
that only a later file defines). An artifact whose files make the set fail is withheld, with the reason:

- ``DependencyPending`` (state ``Pending``): an artifact it may depend on (a Rulesfile loading before it, or a
  Plugin not configured yet) is still being read; it is written once that arrives, or judged again then;
- ``DependencyGone`` (state ``Failed``): it needs what an artifact that no longer applies here provided (deleted,
  or its selectors no longer match); the files of that artifact are not kept for it;
- ``RequirementsNotMet`` (state ``Failed``): it needs a plugin, a plugin version or an engine version that this
  Falco does not have (the plugins of the same set, the engine Falco reports);
- ``InvalidRules`` (state ``Invalid``): anything else the check finds.

A withheld artifact keeps its last good files only while they pass; when they fail too (they used what left) they
leave in the same swap. The choice: a departed artifact's files are never kept for its dependents, because a
deleted or deselected Rulesfile must stop running on that node; its dependents leave with it until it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Literal

from ..records import record
from .image_defaults import CONTAINER_PLUGIN, ImageDefaults
from .model import EMPTY, ArtifactKey, Delivered, Outcome, RulesFileView
from .naming import RULES_DIR, Medium, artifact_file_name
from .needs import ArtifactNeeds, needs_problem
from .rules import LoadContext
from .validation import parse_rules
from .yamldoc import Problem

DEPENDENCY_GONE = "DependencyGone"
DEPENDENCY_PENDING = "DependencyPending"
REQUIREMENTS_NOT_MET = "RequirementsNotMet"
INVALID_RULES = "InvalidRules"
MAX_NARROWING = 4
"""Departed artifacts tried one by one to name the one a dependent needs (more: all are named)."""


RulesSetCheck = Callable[[Sequence[RulesFileView], LoadContext | None], Mapping[ArtifactKey, Problem]]
"""Checks across every rules file in load order, compiling after each file as Falco does (references, overrides,
fields and requirements against the ``LoadContext``; None: unknown, not judged); returns the artifacts that fail,
each with its first error."""


@record(frozen=True)
class Unjudged(Problem):
    """A problem of files the check could not judge (it overran its time budget): refused as they are, without
    asking why (``InvalidRules``)."""


@record(frozen=True)
class _Verdict:
    state: Literal["Invalid", "Failed", "Pending"]
    reason: str
    message: str


def load_context(
    outcomes: Iterable[Outcome],
    versions: Mapping[str, str],
    engine_version: str | None,
    image: ImageDefaults | None = None,
) -> LoadContext:
    """The plugins the set configures (their entries in the plugins fragment), each with the version of the
    library the set delivers when known (``versions``: by the library's OCI digest, from its artifact config).
    ``image``: what Falco loads from its image (``spec.imageDefaults``): its container plugin unless a Plugin
    configures one (version unknown), and its rules file before the set's."""
    plugins: dict[str, str | None] = {}
    for outcome in outcomes:
        entry, digest = outcome.delivered.plugin_entry, outcome.delivered.digest
        if entry is not None:
            plugins[str(entry["name"])] = versions.get(digest) if digest else None
    if image is None:
        return LoadContext(dict(sorted(plugins.items())), engine_version)
    plugins.setdefault(CONTAINER_PLUGIN, None)
    preceding = (image.rules,) if image.rules is not None else ()
    return LoadContext(dict(sorted(plugins.items())), engine_version, preceding)


def enforce_needs(
    outcomes: dict[ArtifactKey, Outcome],
    last_good: Mapping[ArtifactKey, Delivered],
    needs: Mapping[str, ArtifactNeeds],
    versions: Mapping[str, str],
    engine_version: str | None,
    image: ImageDefaults | None = None,
) -> None:
    """Withhold the artifacts whose OCI config needs what the set does not provide (``needs``: by the digest
    delivered); a withheld Plugin leaves the set, so the others are judged again without it."""
    for _ in range(2 * len(outcomes) + 1):  # each round withholds new content or removes kept files
        context = load_context(outcomes.values(), versions, engine_version, image)
        unmet = {}
        for key, outcome in outcomes.items():
            digest = outcome.delivered.digest
            problem = needs_problem(needs[digest], context) if digest is not None and digest in needs else None
            if problem is not None:
                unmet[key] = problem
        if not unmet:
            return
        for key, problem in sorted(unmet.items()):
            verdict = _Verdict("Failed", REQUIREMENTS_NOT_MET, problem)
            outcomes[key] = _withheld(outcomes[key], last_good.get(key, EMPTY), verdict)


def enforce_rules_set(
    outcomes: dict[ArtifactKey, Outcome],
    last_good: Mapping[ArtifactKey, Delivered],
    check: RulesSetCheck,
    context: LoadContext,
    priorities: Mapping[ArtifactKey, int],
) -> dict[ArtifactKey, Delivered]:
    """Withhold the artifacts whose files make the set fail until the set passes; returns the departed artifacts'
    files a withheld dependent needs (kept as last good, so later passes still say ``DependencyGone``).

    ``priorities``: each artifact's priority (where a pending Rulesfile's files will load)."""
    departed = {key: delivered for key, delivered in last_good.items() if key not in outcomes and not delivered.empty}
    needed: dict[ArtifactKey, Delivered] = {}
    judge = _Judge(check, context, outcomes, departed, priorities)
    for _ in range(2 * len(outcomes) + 2):  # each round withholds new content or removes kept files
        views = _views(outcomes.values())
        owners = {view.key for view in views}
        problems = {key: problem for key, problem in judge.failures(views, context).items() if key in owners}
        if not problems:
            return needed
        for key, problem in problems.items():
            outcome = outcomes[key]
            verdict, needs = judge.verdict(key, problem)
            needed.update({name: departed[name] for name in needs if name in departed})
            outcomes[key] = _withheld(outcome, last_good.get(key, EMPTY), verdict)
            before = judge.withdrawn[key][0] if key in judge.withdrawn else outcome.delivered
            judge.withdrawn[key] = (before, outcomes[key])
    raise AssertionError("the rules set did not settle")  # unreachable: every round removes files


def _withheld(outcome: Outcome, kept: Delivered, verdict: _Verdict) -> Outcome:
    if outcome.state != "Installed":
        # Its kept files fail now (what they used left): they leave too, its own state stays.
        message = (outcome.message or "").removesuffix("; the last good files stay")
        message += f"; its last good files are removed as well ({verdict.reason}: {verdict.message})"
        return Outcome(outcome.key, outcome.generation, outcome.state, EMPTY, outcome.reason, message)
    if kept.files == outcome.delivered.files and kept.plugin_entry == outcome.delivered.plugin_entry:
        kept = EMPTY  # the same files fail the same way
    if not kept.empty:
        suffix = "; the last good files stay"
    else:
        suffix = "; nothing is written for it until then" if verdict.reason != INVALID_RULES else ""
    return Outcome(outcome.key, outcome.generation, verdict.state, kept, verdict.reason, verdict.message + suffix)


class _Judge:
    """Why an artifact's files make the set fail: a dependency pending or gone, a requirement, or its content."""

    def __init__(
        self,
        check: RulesSetCheck,
        context: LoadContext,
        outcomes: Mapping[ArtifactKey, Outcome],
        departed: Mapping[ArtifactKey, Delivered],
        priorities: Mapping[ArtifactKey, int],
    ) -> None:
        self.check, self.context, self.outcomes = check, context, outcomes
        self.departed, self.priorities = departed, priorities
        self.withdrawn: dict[ArtifactKey, tuple[Delivered, Outcome]] = {}
        """Artifacts withheld in this plan: the files they had before, and their outcome now."""

    def failures(self, views: Sequence[RulesFileView], context: LoadContext | None) -> Mapping[ArtifactKey, Problem]:
        """The check of the whole set (which compiles after each file, as Falco does)."""
        return self.check(views, context)

    def verdict(self, key: ArtifactKey, problem: Problem) -> tuple[_Verdict, list[ArtifactKey]]:
        if isinstance(problem, Unjudged):
            return _Verdict("Invalid", INVALID_RULES, str(problem)), []
        pending = self._pending_providers(key)
        if pending:
            names = ", ".join(f"{k.kind} {k.name}" for k in pending)
            return _Verdict("Pending", DEPENDENCY_PENDING, f"waits for {names}, still being read: {problem}"), []
        gone = self._absent_needed(key)
        if gone:
            return _Verdict("Failed", DEPENDENCY_GONE, f"needs {self._describe(gone)}: {problem}"), gone
        # Unknown plugins and engine (only the rules files Falco loads before the set): does its content fail?
        unknown = LoadContext(preceding=self.context.preceding) if self.context.preceding else None
        if not self._passes(key, list(self.outcomes.values()), unknown):
            return _Verdict("Invalid", INVALID_RULES, str(problem)), []
        return _Verdict("Failed", REQUIREMENTS_NOT_MET, str(problem)), []

    def _describe(self, keys: Sequence[ArtifactKey]) -> str:
        parts = []
        for key in keys:
            if key in self.departed:
                parts.append(f"{key.kind} {key.name}{_files_named(self.departed[key])}, which no longer applies to "
                             "this Falco (deleted, or its selectors no longer match)")  # fmt: skip
            else:
                now = self.withdrawn[key][1]
                parts.append(f"{key.kind} {key.name}, which is not written here ({now.state}, {now.reason})")
        return "; ".join(parts)

    def _pending_providers(self, key: ArtifactKey) -> list[ArtifactKey]:
        """Pending artifacts that could provide what ``key`` lacks: Plugins not configured yet, and Rulesfiles
        loading before it."""
        latest = max(_rules_files(self.outcomes[key].delivered), default="")
        providers = []
        for other, outcome in sorted(self.outcomes.items()):
            if other == key or outcome.state != "Pending":
                continue
            if (other.kind == "Plugin" and outcome.delivered.plugin_entry is None) or (
                other.kind == "Rulesfile" and _first_file_name(other, self.priorities.get(other, 50)) < latest
            ):
                providers.append(other)
        return providers

    def _absent_needed(self, key: ArtifactKey) -> list[ArtifactKey]:
        """The departed or withheld artifacts without which ``key`` fails: narrowed one by one when few."""
        withheld_for_others = [
            other for other, (_, now) in self.withdrawn.items() if other != key and now.reason != INVALID_RULES
        ]
        absent = [*self.departed, *withheld_for_others]
        if not absent or not self._passes_with(key, absent):
            return []
        if 1 < len(absent) <= MAX_NARROWING:
            alone = [other for other in absent if self._passes_with(key, [other])]
            return alone or absent
        return absent

    def _before(self, key: ArtifactKey) -> Delivered:
        return self.departed[key] if key in self.departed else self.withdrawn[key][0]

    def _passes_with(self, key: ArtifactKey, absent: Sequence[ArtifactKey]) -> bool:
        """Whether ``key``'s files load in the set with the ``absent`` artifacts back (as they were), once the
        other files that fail there are out of the way (a check reports the first error of a compile only)."""
        returned = [Outcome(other, None, "Installed", self._before(other)) for other in absent]
        candidates = [outcome for outcome in self.outcomes.values() if outcome.key not in absent] + returned
        plugins = dict(self.context.plugins or {})
        for outcome in returned:
            if outcome.delivered.plugin_entry is not None:
                plugins.setdefault(str(outcome.delivered.plugin_entry["name"]), None)
        return self._passes(key, candidates, replace(self.context, plugins=plugins))

    def _passes(self, key: ArtifactKey, candidates: list[Outcome], context: LoadContext | None) -> bool:
        for _ in range(len(candidates) + 1):
            failing = set(self.failures(_views(candidates), context))
            if key in failing:
                return False
            if not failing:
                return True
            candidates = [outcome for outcome in candidates if outcome.key not in failing]
        return False


def _views(outcomes: Iterable[Outcome]) -> list[RulesFileView]:
    views = [
        RulesFileView(outcome.key, name, parse_rules(data), data.decode(errors="replace"))
        for outcome in outcomes
        for (directory, name), data in outcome.delivered.files.items()
        if directory == RULES_DIR
    ]
    return sorted(views, key=lambda view: view.file_name)


def _rules_files(delivered: Delivered) -> dict[str, bytes]:
    return {name: data for (directory, name), data in delivered.files.items() if directory == RULES_DIR}


def _files_named(delivered: Delivered) -> str:
    names = sorted(_rules_files(delivered))
    return f" ({', '.join(names)})" if names else ""


def _first_file_name(key: ArtifactKey, priority: int) -> str:
    return artifact_file_name(priority, key.name, Medium.OCI)
