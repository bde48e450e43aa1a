"""The agent's planning step: the pure planner in a worker thread, with the rule-set check reached once per set.

A pass runs on every change the agent sees: an artifact, a ConfigMap, a pull, the Node's or the Falco's labels,
and every new answer from Falco (what it loaded). Most of these leave the rules files as they were, and Falco's
answer is no input of the plan at all. Parsing is remembered by content (``artifacts.validation``); checking the
whole set (condition grammar, references between files) is the heavy part, and its verdict depends only on the
files it reads: it is remembered by their owners, names and SHA-256, so a pass with the same rules files reuses
the last verdict.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from functools import partial

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
    plan,
)

REMEMBERED_SETS = 16
"""Verdicts kept: a pass that rejects a file checks the set again without it, so one pass may need several."""


class PassPlanner:
    def __init__(self, plugins_dir: str, rules_set_check: RulesSetCheck | None, remembered: int = REMEMBERED_SETS):
        self.plugins_dir = plugins_dir
        self.rules_set_check = rules_set_check
        self.remembered = remembered
        self._verdicts: OrderedDict[Hashable, Mapping[ArtifactKey, Problem]] = OrderedDict()
        self._lock = threading.Lock()

    async def plan(
        self, artifacts: Iterable[Artifact], resolutions: Resolutions, last_good: Mapping[ArtifactKey, Delivered]
    ) -> Plan:
        """The plan of a pass, made off the event loop (which keeps serving informers, Falco polls and probes)."""
        check = self._check if self.rules_set_check is not None else None
        return await anyio.to_thread.run_sync(partial(
            plan, list(artifacts), resolutions, last_good, plugins_dir=self.plugins_dir, rules_set_check=check,
        ))  # fmt: skip

    def _check(self, views: Sequence[RulesFileView]) -> Mapping[ArtifactKey, Problem]:
        assert self.rules_set_check is not None
        key = set_key(views)
        if key is None:
            return self.rules_set_check(views)
        with self._lock:
            if key in self._verdicts:
                self._verdicts.move_to_end(key)
                return self._verdicts[key]
        verdict = self.rules_set_check(views)
        with self._lock:
            self._verdicts[key] = verdict
            while len(self._verdicts) > self.remembered:
                self._verdicts.popitem(last=False)
        return verdict


def set_key(views: Sequence[RulesFileView]) -> tuple[tuple[ArtifactKey, str, str], ...] | None:
    """What the set check reads, in load order: each file's owner, name and SHA-256 (None without the texts)."""
    if any(view.text is None for view in views):
        return None
    return tuple((view.key, view.file_name, hashlib.sha256((view.text or "").encode()).hexdigest()) for view in views)
