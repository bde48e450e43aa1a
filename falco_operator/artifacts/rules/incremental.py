"""The rule-set check made proportional to what changed: the same findings as ``check_rule_set``, from remembered
parts.

Files meet only through names: a list, macro or rule one file defines, appends to, overrides or enables, and
another file's text names (a condition using a macro, list substitution, an item naming a list). Files that share
no name form separate *groups*, and a group's check does not depend on the others: it sees the same definitions,
in the same order, and compiles the same items after each of its files. So the set is split into its groups (the
connected files), each group is checked on its own and remembered by its files (names and SHA-256, in load order)
and what the Falco that loads it provides, and the set's findings are put together from the groups' as the whole
check orders them: collection errors in load order, or the plugin requirements, or the first failing compile in
load order with what every group compiled before it. A change to one file checks that file's group again; the
others are remembered.

Which names a file may use is judged generously (every word of every string in it, split as list substitution
splits, and as identifiers): a generous link only checks two files together, never apart when they meet. A name
that splits into no word at all joins every file.

Bounds (``IncrementalCheck``): the groups' findings and the files' words are kept for the most recently used, up
to ``max_bytes`` of the text of the files they stand for (each about its text in memory or less); a file larger
than ``max_entry`` is not remembered.
"""

from __future__ import annotations

import bisect
import hashlib
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..validation import Invalid, check_rules
from .fields import FieldCatalogue
from .requirements import Requirement, plugin_requirement_verdict
from .ruleset import (
    Finding,
    LoadContext,
    RulesFile,
    _collect,
    _Collector,
    _compile,
    _Compiled,
    _defined_later,
    _Stop,
    _Where,
)

_SPLIT = str.maketrans(dict.fromkeys(" \t\n\r(),=\"'", " "))
_WORD = re.compile(r"[A-Za-z0-9_]+")
EVERY_FILE_WORDS = frozenset({"and", "or", "not", "in"})
"""Words the check itself writes into a rule's condition (its exceptions), whatever the file says."""
NAME_KINDS = ("list", "macro", "rule")


def words(text: str) -> set[str]:
    """The pieces list substitution may match in a text, and its identifiers."""
    return set(text.translate(_SPLIT).split()) | set(_WORD.findall(text))


@dataclass(frozen=True)
class _FileWords:
    names: tuple[str, ...]
    """The words of the names the file defines or changes."""
    joins_all: bool
    """It defines or changes a name without a word: it may meet any file."""
    used: tuple[str, ...]
    """Every word of every string in it (a tuple: a third of a set's memory, and only ever intersected)."""


def _file_words(items: Sequence[Any]) -> _FileWords:
    names: set[str] = set()
    joins_all = False
    for item in items:
        if not isinstance(item, dict):
            continue
        for kind in NAME_KINDS:
            if kind in item:
                found = words(str(item[kind]))
                names |= found
                joins_all = joins_all or not found
    used: set[str] = set(EVERY_FILE_WORDS)
    todo: list[Any] = list(items)
    while todo:
        value = todo.pop()
        if isinstance(value, dict):
            todo.extend(value.keys())
            todo.extend(value.values())
        elif isinstance(value, list):
            todo.extend(value)
        else:
            used |= words(str(value))
    # Interned: the words files share (fields, operators, common names) are kept once.
    return _FileWords(tuple(map(sys.intern, names)), joins_all, tuple(map(sys.intern, used)))


@dataclass(frozen=True)
class _FileTrace:
    error: Finding | None
    warnings: tuple[Finding, ...]
    requirements: tuple[tuple[list[Requirement], _Where], ...]


_CLEAN = _FileTrace(None, (), ())


@dataclass(frozen=True)
class _RuleTrace:
    file: int
    """The group's file where the rule took its place in the set's order (its last definition or update)."""
    index: int
    compiles: tuple[tuple[int, tuple[Finding, ...]], ...]
    """After which of the group's files it was compiled, and its warnings then."""


@dataclass(frozen=True)
class _GroupTrace:
    """What checking a group of files alone found, file by file."""

    files: tuple[_FileTrace, ...]
    failure: tuple[int, Finding] | None
    """The group's file after which the first compile failed, and its finding."""
    rules: tuple[_RuleTrace, ...]


def _check_group(files: Sequence[RulesFile], catalogue: FieldCatalogue, context: LoadContext | None) -> _GroupTrace:
    """``check_rule_set``'s loop over one group, keeping what the set's findings are made of."""
    collector = _Collector(catalogue, False, context)
    compiled = _Compiled(record=[])
    traces: list[_FileTrace] = []
    starts: list[int] = []
    history: dict[str, list[tuple[int, tuple[Finding, ...]]]] = {}
    failure: tuple[int, Finding] | None = None
    errored = False
    for position, rules_file in enumerate(files):
        warned, required = len(collector.findings), len(collector.plugin_requirements)
        starts.append(collector.counter)
        error = None
        try:
            check_rules(rules_file.items)
        except Invalid as invalid:
            error = Finding(rules_file.name, invalid.problem.line, None, "error", invalid.problem.message)
        else:
            try:
                for item in rules_file.items:
                    _collect(collector, rules_file, item)
            except _Stop as stop:
                error = stop.finding
        errored = errored or error is not None
        trace = _FileTrace(error, tuple(collector.findings[warned:]), tuple(collector.plugin_requirements[required:]))
        traces.append(_CLEAN if trace == _CLEAN else trace)
        if errored or failure is not None:
            continue
        failed = _compile(collector, compiled, last=position == len(files) - 1)
        if failed is not None:
            failure = (position, _defined_later(failed, rules_file, files[position + 1 :]).finding)
        assert compiled.record is not None
        for name in compiled.record:
            history.setdefault(name, []).append((position, tuple(compiled.warnings[name])))
        compiled.record.clear()
    rules = tuple(
        _RuleTrace(bisect.bisect_right(starts, rule.index) - 1, rule.index, tuple(history[rule.name]))
        for rule in collector.rules.values()
        if any(warnings for _, warnings in history.get(rule.name, ()))  # a rule that never warned adds nothing
    )
    return _GroupTrace(tuple(traces), failure, rules)


def _groups(analyses: Sequence[_FileWords]) -> list[list[int]]:
    """The files (by position) that meet, each group in load order, groups by their first file."""
    parent = list(range(len(analyses)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    def join(first: int, second: int) -> None:
        a, b = root(first), root(second)
        if a != b:
            parent[max(a, b)] = min(a, b)

    definers: dict[str, list[int]] = {}
    for position, analysis in enumerate(analyses):
        if analysis.joins_all:
            for other in range(len(analyses)):
                join(position, other)
        for word in analysis.names:
            definers.setdefault(word, []).append(position)
    defined = set(definers)
    for position, analysis in enumerate(analyses):
        for word in defined.intersection(analysis.used):
            for definer in definers[word]:
                if definer != position:
                    join(position, definer)
    groups: dict[int, list[int]] = {}
    for position in range(len(analyses)):
        groups.setdefault(root(position), []).append(position)
    return list(groups.values())


class _Lru:
    """Values by key, the least recently used dropped once the sizes they stand for exceed ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[int, Any]] = OrderedDict()
        self._bytes = 0

    def get(self, key: Hashable) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: Hashable, size: int, value: Any) -> None:
        if key in self._entries:
            return
        self._entries[key] = (size, value)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (dropped, _) = self._entries.popitem(last=False)
            self._bytes -= dropped

    def __len__(self) -> int:
        return len(self._entries)


class IncrementalCheck:
    """``check_rule_set`` (the set as the agent delivers it: not standalone) with the groups of files remembered
    across calls. Safe across threads."""

    def __init__(self, max_bytes: int = 2 * 1024 * 1024, max_entry: int = 512 * 1024) -> None:
        self.max_entry = max_entry
        self._words = _Lru(max_bytes)
        self._groups = _Lru(max_bytes)
        self._lock = threading.Lock()
        self.checked_files = 0
        """Files checked so far (a remembered group's are not): what the remembering saves shows here."""

    def check(self, files: Sequence[RulesFile], context: LoadContext | None = None) -> list[Finding]:
        """Every problem of the set, as ``check_rule_set(files, context=context)`` finds it."""
        catalogue = FieldCatalogue.load()
        if context is not None and context.plugins is not None:
            catalogue = catalogue.loading(context.plugins)
        if context is not None and context.preceding:
            files = [*context.preceding, *files]
            context = replace(context, preceding=())
        ids = [_content_id(rules_file) for rules_file in files]
        with self._lock:
            analyses: list[_FileWords | None] = [self._words.get(id_) if id_ else None for id_ in ids]
        for position, found in enumerate(analyses):
            if found is None:
                analyses[position] = self._analysis(files[position], ids[position])
        groups = _groups([analysis for analysis in analyses if analysis is not None])
        context_key = _context_key(context)
        keys: list[Hashable] = [
            (tuple((files[p].name, ids[p]) for p in group), context_key) if all(ids[p] for p in group) else None
            for group in groups
        ]
        with self._lock:
            traces: list[_GroupTrace | None] = [self._groups.get(key) if key else None for key in keys]
        for index, group in enumerate(groups):
            if traces[index] is None:
                traces[index] = self._checked([files[p] for p in group], keys[index], catalogue, context)
        return _findings(groups, [trace for trace in traces if trace is not None], context)

    def _analysis(self, rules_file: RulesFile, content: str | None) -> _FileWords:
        found = _file_words(rules_file.items)
        size = len(rules_file.text or "")
        if content is not None and size <= self.max_entry:
            with self._lock:
                self._words.put(content, size, found)
        return found

    def _checked(
        self, files: Sequence[RulesFile], key: Hashable, catalogue: FieldCatalogue, context: LoadContext | None
    ) -> _GroupTrace:
        trace = _check_group(files, catalogue, context)
        size = sum(len(f.text or "") for f in files)
        with self._lock:
            self.checked_files += len(files)
            if key is not None and size <= self.max_entry:
                self._groups.put(key, size, trace)
        return trace


def _content_id(rules_file: RulesFile) -> str | None:
    if rules_file.text is None:
        return None
    return hashlib.sha256(rules_file.text.encode(errors="surrogatepass")).hexdigest()


def _context_key(context: LoadContext | None) -> Hashable:
    if context is None:
        return None
    plugins = None if context.plugins is None else tuple(sorted(context.plugins.items()))
    return plugins, context.engine_version


def _findings(
    groups: Sequence[Sequence[int]], traces: Sequence[_GroupTrace], context: LoadContext | None
) -> list[Finding]:
    """The set's findings in ``check_rule_set``'s order, from its groups' (positions in the set)."""
    by_file: dict[int, _FileTrace] = {}
    for group, trace in zip(groups, traces, strict=True):
        by_file.update(zip(group, trace.files, strict=True))
    errors: list[Finding] = []
    warnings: list[Finding] = []
    for position in sorted(by_file):
        file_trace = by_file[position]
        if file_trace.error is not None:
            errors.append(file_trace.error)
        warnings.extend(file_trace.warnings)
    if errors:
        return errors + warnings
    plugins = context.plugins if context is not None else None
    if plugins is not None:
        for position in sorted(by_file):
            for alternatives, where in by_file[position].requirements:
                verdict = plugin_requirement_verdict(alternatives, plugins)
                if verdict is None:
                    continue
                if verdict.severity == "warning":
                    warnings.append(Finding(where.file, where.line, None, "warning", verdict.message))
                else:
                    errors.append(Finding(where.file, where.line, None, "error", verdict.message))
    if errors:
        return errors + warnings
    failures = [(group[trace.failure[0]], trace.failure[1]) for group, trace in zip(groups, traces, strict=True)
                if trace.failure is not None]  # fmt: skip
    failure = min(failures, key=lambda found: found[0], default=None)
    cutoff = failure[0] if failure is not None else len(by_file)
    ordered: list[tuple[int, int, tuple[Finding, ...]]] = []
    for group, trace in zip(groups, traces, strict=True):
        for rule in trace.rules:
            compiled = [found for after, found in rule.compiles if group[after] <= cutoff]
            if compiled:
                ordered.append((group[rule.file], rule.index, compiled[-1]))
    ordered.sort(key=lambda entry: entry[:2])
    found = [failure[1]] if failure is not None else []
    return found + warnings + [warning for *_, rule_warnings in ordered for warning in rule_warnings]
