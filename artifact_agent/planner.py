"""The agent's planning step: the pure planner in a worker thread, with the rule-set check reached once per set and
within the check budget.

A pass runs on every change the agent sees: an artifact, a ConfigMap, a pull, the Node's or the Falco's labels,
and every new answer from Falco (what it loaded). Most of these leave the rules files as they were, and Falco's
answer is no input of the plan at all. Parsing is remembered by content (``artifacts.validation``); checking the
whole set (condition grammar, references between files) is the heavy part, and its verdict depends only on the
files it reads and on what the Falco that loads them provides (the plugins the set configures, the engine
version): it is remembered by the files' owners, names and SHA-256 and by that ``LoadContext``, so a pass with the
same rules files and plugins reuses the last verdict.

The set check runs as the operator's checks do (``artifacts.budget``): in a worker thread of its own, within the
check budget. A set that overruns it is refused for the files that made it slow: the files not seen in a set
judged in time before, narrowed (when there are several) to those that overrun the budget when added alone to
the others. They are ``Invalid`` with the budget's message and their last good files stay; the planner then checks
the set again without them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from functools import partial

import anyio.from_thread
import anyio.to_thread

from falco_operator.artifacts import (
    Artifact,
    ArtifactKey,
    Delivered,
    Plan,
    Problem,
    Resolutions,
    RulesFileView,
    RulesSetCheck,
    Unavailable,
    plan,
)
from falco_operator.artifacts.budget import BudgetedChecks, OverBudget
from falco_operator.artifacts.image_defaults import ImageDefaults
from falco_operator.artifacts.needs import ArtifactNeeds
from falco_operator.artifacts.rules import LoadContext
from falco_operator.artifacts.setinvariant import Unjudged

REMEMBERED_SETS = 16
"""Verdicts kept: a pass that rejects a file checks the set again without it, so one pass may need several."""
REMEMBERED_FILES = 1024
"""Rules files (name and SHA-256) known to have been part of a set judged within the budget."""
Verdict = Mapping[ArtifactKey, Problem]
FileId = tuple[str, str]
"""A rules file's name and SHA-256."""


class PassPlanner:
    def __init__(
        self,
        plugins_dir: str,
        rules_set_check: RulesSetCheck | None,
        checks: BudgetedChecks[Verdict] | None = None,
        image_defaults: ImageDefaults | None = None,
    ) -> None:
        self.plugins_dir = plugins_dir
        self.rules_set_check = rules_set_check
        self.image_defaults = image_defaults
        """What Falco loads from its image (``--image-defaults-dir``); None: only the agent's files."""
        self.checks: BudgetedChecks[Verdict] = checks or BudgetedChecks(remembered=REMEMBERED_SETS)
        """Set verdicts, each reached within the budget, remembered by ``set_key``."""
        self._judged: OrderedDict[FileId, None] = OrderedDict()
        self._lock = threading.Lock()

    async def plan(
        self,
        artifacts: Iterable[Artifact],
        resolutions: Resolutions,
        last_good: Mapping[ArtifactKey, Delivered],
        *,
        plugin_versions: Mapping[str, str] | None = None,
        engine_version: str | None = None,
        artifact_needs: Mapping[str, ArtifactNeeds] | None = None,
        withheld: Mapping[ArtifactKey, Unavailable] | None = None,
        then: Callable[[Plan], None] | None = None,
    ) -> Plan:
        """The plan of a pass, made off the event loop (which keeps serving informers, Falco polls and probes).
        ``plugin_versions``: plugin library versions by OCI digest (their artifact configs); ``engine_version``:
        the engine of the Falco this agent serves, when known (None: requirements on it are not judged);
        ``artifact_needs``: what OCI artifacts' configs need, by digest; ``withheld``: artifacts kept at their last
        good files with that state. ``then`` is given the plan in the same worker thread (the agent writes the
        files there: one trip to a worker thread per pass, not two)."""
        check = self._check if self.rules_set_check is not None else None
        planned = partial(
            plan, list(artifacts), resolutions, last_good, plugins_dir=self.plugins_dir, rules_set_check=check,
            plugin_versions=plugin_versions, engine_version=engine_version, artifact_needs=artifact_needs,
            image_defaults=self.image_defaults, withheld=withheld,
        )  # fmt: skip

        def plan_then() -> Plan:
            result = planned()
            if then is not None:
                then(result)
            return result

        return await anyio.to_thread.run_sync(plan_then)

    def _check(self, views: Sequence[RulesFileView], context: LoadContext | None = None) -> Verdict:
        """The set check as the planner calls it, in the planning thread: waits for the budgeted check."""
        files = [file_id(view) for view in views]
        try:
            verdict = self._within_budget(views, files, context)
        except OverBudget as over:
            return self._blame(views, files, context, over)
        with self._lock:
            for file in files:
                self._judged[file] = None
                self._judged.move_to_end(file)
            while len(self._judged) > REMEMBERED_FILES:
                self._judged.popitem(last=False)
        return verdict

    def _within_budget(
        self, views: Sequence[RulesFileView], files: Sequence[FileId], context: LoadContext | None
    ) -> Verdict:
        assert self.rules_set_check is not None
        # The key is all the check reads: the files and what the Falco that loads them provides.
        key = (tuple((view.key, *file) for view, file in zip(views, files, strict=True)), context_key(context))
        return anyio.from_thread.run(self.checks.run, key, partial(self.rules_set_check, list(views), context))

    def _blame(
        self, views: Sequence[RulesFileView], files: Sequence[FileId], context: LoadContext | None, over: OverBudget
    ) -> Verdict:
        """The artifacts whose files made the set overrun the budget."""
        with self._lock:
            new = [index for index, file in enumerate(files) if file not in self._judged]
        suspects = new or list(range(len(views)))
        if len(suspects) > 1:
            culprits = [s for s in suspects if self._overruns_alone(views, files, context, suspects, s)]
            suspects = culprits or suspects
        problems: dict[ArtifactKey, Problem] = {}
        for index in suspects:
            problems.setdefault(views[index].key, Unjudged(f"{views[index].file_name}: {over}"))
        return problems

    def _overruns_alone(
        self,
        views: Sequence[RulesFileView],
        files: Sequence[FileId],
        context: LoadContext | None,
        suspects: Sequence[int],
        suspect: int,
    ) -> bool:
        """Whether the set without the other suspects overruns the budget (load order kept)."""
        others = set(suspects) - {suspect}
        kept = [index for index in range(len(views)) if index not in others]
        try:
            self._within_budget([views[index] for index in kept], [files[index] for index in kept], context)
        except OverBudget:
            return True
        return False


def context_key(context: LoadContext | None) -> Hashable:
    """A LoadContext as a memo key (its plugins are a mapping)."""
    if context is None:
        return None
    plugins = None if context.plugins is None else tuple(sorted(context.plugins.items()))
    preceding = tuple(_identity(file.name, file.text, file.items) for file in context.preceding)
    return plugins, context.engine_version, preceding


def file_id(view: RulesFileView) -> FileId:
    """A rules file's name and the SHA-256 of its text (of its items, for a view without text)."""
    return _identity(view.file_name, view.text, view.items)


def _identity(name: str, text: str | None, items: object) -> FileId:
    text = text if text is not None else repr(items)
    return name, hashlib.sha256(text.encode()).hexdigest()
