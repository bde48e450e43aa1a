"""The rule-set check made proportional to what changed: the same findings as ``check_rule_set``, from remembered
parts.

Files meet only through names: a list or macro one file defines, appends to or overrides and another file's text
names (a condition using a macro, list substitution, an item naming a list), or a rule both define, change or
enable. Files that share no name form separate *groups*, and a group's check does not depend on the others: it
sees the same definitions, in the same order, and compiles the same items after each of its files. So the set is
split into its groups (the connected files), each group is checked on its own and remembered by its files (names
and SHA-256, in load order) and what the Falco that loads it provides, and the set's findings are put together
from the groups' as the whole check orders them: collection errors in load order, or the plugin requirements, or
the first failing compile in load order with what every group compiled before it. A change to one file checks that
file's group again; the others are remembered.

The rules Falco loads before the set (the image's, ``LoadContext.preceding``) are used by most files, so they would
join everything into one group: instead their run is kept (``_Base``) and a group that leaves what they define
alone goes on from a copy of it. Groups that change one of their lists, macros or rules, and the groups that use
what such a change reaches (through the image's own macros and lists too), are checked with them from the start.

Which list and macro names a file may use is judged generously (every word of every string in it, split as list
substitution splits, and as identifiers): a generous link only checks two files together, never apart when they
meet. A list or macro name that splits into no word at all joins every file.

Bounds (``IncrementalCheck``): the groups' findings and the files' words are kept for the most recently used, up
to ``max_bytes`` of the text of the files they stand for (each takes less than its text, or about twice for very
small files); a file larger than ``max_entry`` is not remembered. ``REMEMBERED_BASES`` runs over the image's rules
are kept (one per plugins and engine version the set was checked with).
"""

from __future__ import annotations

import bisect
import hashlib
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import replace
from typing import Any

from ...records import record
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
    _Rule,
    _Stop,
    _Where,
)

_SPLIT = str.maketrans(dict.fromkeys(" \t\n\r(),=\"'", " "))
_WORD = re.compile(r"[A-Za-z0-9_]+")
EVERY_FILE_WORDS = frozenset({"and", "or", "not", "in"})
"""Words the check itself writes into a rule's condition (its exceptions), whatever the file says."""
REFERABLE_KINDS = ("list", "macro")


def words(text: str) -> set[str]:
    """The pieces list substitution may match in a text, and its identifiers."""
    return set(text.translate(_SPLIT).split()) | set(_WORD.findall(text))


@record(frozen=True)
class _FileWords:
    names: tuple[str, ...]
    """The words of the names of the lists and macros the file defines or changes."""
    rules: tuple[str, ...]
    """The rules it defines or changes (a rule is never used by name: only the same name meets it)."""
    joins_all: bool
    """It defines or changes a list or macro whose name has no word: it may meet any file."""
    used: tuple[str, ...]
    """Every word of every string in it (a tuple: a third of a set's memory, and only ever intersected)."""


def _file_words(items: Sequence[Any]) -> _FileWords:
    names: set[str] = set()
    rules: set[str] = set()
    joins_all = False
    for item in items:
        if not isinstance(item, dict):
            continue
        if "rule" in item:
            rules.add(str(item["rule"]))
        for kind in REFERABLE_KINDS:
            if kind in item:
                found = words(str(item[kind]))
                names |= found
                joins_all = joins_all or not found
    # Interned: the words files share (fields, operators, common names) are kept once.
    return _FileWords(_interned(names), tuple(rules), joins_all, _interned(_used(items)))


def _used(value: Any) -> set[str]:
    used: set[str] = set(EVERY_FILE_WORDS)
    todo: list[Any] = [value]
    while todo:
        value = todo.pop()
        if isinstance(value, dict):
            todo.extend(value.keys())
            todo.extend(value.values())
        elif isinstance(value, list):
            todo.extend(value)
        else:
            used |= words(str(value))
    return used


def _interned(found: set[str]) -> tuple[str, ...]:
    return tuple(map(sys.intern, found))


@record(frozen=True)
class _FileTrace:
    error: Finding | None
    warnings: tuple[Finding, ...]
    requirements: tuple[tuple[list[Requirement], _Where], ...]


_CLEAN = _FileTrace(None, (), ())


@record(frozen=True)
class _RuleTrace:
    file: int
    """The group's file where the rule took its place in the set's order (its last definition or update)."""
    index: int
    compiles: tuple[tuple[int, tuple[Finding, ...]], ...]
    """After which of the group's files it was compiled, and its warnings then."""


@record(frozen=True)
class _GroupTrace:
    """What checking a group of files alone found, file by file."""

    files: tuple[_FileTrace, ...]
    failure: tuple[int, Finding] | None
    """The group's file after which the first compile failed, and its finding."""
    rules: tuple[_RuleTrace, ...]


def _check_group(files: Sequence[RulesFile], catalogue: FieldCatalogue, context: LoadContext | None) -> _GroupTrace:
    """``check_rule_set``'s loop over one group, keeping what the set's findings are made of."""
    run = _Run(catalogue, context)
    run.load(files, last=True)
    return run.trace()


class _Run:
    """``check_rule_set``'s loop, file by file, with what each file found kept apart; it may go on from a copy
    (``copy``) of a run over the files Falco loads before the set."""

    def __init__(self, catalogue: FieldCatalogue, context: LoadContext | None) -> None:
        self.collector = _Collector(catalogue, False, context)
        self.compiled = _Compiled(record=[])
        self.files: list[_FileTrace] = []
        self.starts: list[int] = []
        self.history: dict[str, list[tuple[int, tuple[Finding, ...]]]] = {}
        self.failure: tuple[int, Finding] | None = None
        self.errored = False

    def load(self, files: Sequence[RulesFile], *, last: bool) -> None:
        """Load ``files`` after those loaded so far; ``last``: no file follows them."""
        collector, compiled = self.collector, self.compiled
        for index, rules_file in enumerate(files):
            position = len(self.files)
            warned, required = len(collector.findings), len(collector.plugin_requirements)
            self.starts.append(collector.counter)
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
            self.errored = self.errored or error is not None
            found = _FileTrace(
                error, tuple(collector.findings[warned:]), tuple(collector.plugin_requirements[required:])
            )
            self.files.append(_CLEAN if found == _CLEAN else found)
            if self.errored or self.failure is not None:
                continue
            failed = _compile(collector, compiled, last=last and index == len(files) - 1)
            if failed is not None:
                self.failure = (position, _defined_later(failed, rules_file, files[index + 1 :]).finding)
            assert compiled.record is not None
            for name in compiled.record:
                self.history.setdefault(name, []).append((position, tuple(compiled.warnings[name])))
            compiled.record.clear()

    def trace(self, first_file: int = 0) -> _GroupTrace:
        """What the files from ``first_file`` on found (positions counted from it)."""
        first_index = self.starts[first_file] if first_file < len(self.starts) else self.collector.counter
        rules = tuple(
            _RuleTrace(bisect.bisect_right(self.starts, rule.index) - 1 - first_file, rule.index,
                       tuple((after - first_file, found) for after, found in self.history[rule.name]))
            for rule in self.collector.rules.values()
            # a rule that never warned adds nothing; the earlier files' rules are theirs
            if rule.index >= first_index and any(found for _, found in self.history.get(rule.name, ()))
        )  # fmt: skip
        failure = self.failure
        if failure is not None:
            failure = (failure[0] - first_file, failure[1]) if failure[0] >= first_file else None
        return _GroupTrace(tuple(self.files[first_file:]), failure, rules)

    def copy(self) -> _Run:
        """A run that goes on from where this one is, without changing it: every mutable part copied (the
        condition trees and findings are immutable and shared)."""
        run = _Run.__new__(_Run)
        old = self.collector
        collector = run.collector = _Collector(old.catalogue, old.standalone, old.context)
        collector.plugin_requirements = list(old.plugin_requirements)
        collector.lists = {name: replace(entry, items=list(entry.items)) for name, entry in old.lists.items()}
        collector.macros = {name: replace(entry) for name, entry in old.macros.items()}
        collector.rules = {name: _copied_rule(rule) for name, rule in old.rules.items()}
        collector.counter, collector.findings, collector.touched = old.counter, list(old.findings), set(old.touched)
        compiled = self.compiled
        run.compiled = _Compiled(list(compiled.lists), dict(compiled.expanded), dict(compiled.macro_trees),
                                 dict(compiled.warnings), compiled.links.copy(), record=[])  # fmt: skip
        run.files, run.starts = list(self.files), list(self.starts)
        run.history = {name: list(entries) for name, entries in self.history.items()}
        run.failure, run.errored = self.failure, self.errored
        return run


def _copied_rule(rule: _Rule) -> _Rule:
    exceptions = [replace(exception, values=list(exception.values)) for exception in rule.exceptions]
    return replace(rule, exceptions=exceptions)


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
    rules: dict[str, int] = {}
    for position, analysis in enumerate(analyses):
        if analysis.joins_all:
            for other in range(len(analyses)):
                join(position, other)
        for word in analysis.names:
            definers.setdefault(word, []).append(position)
        for rule in analysis.rules:
            join(position, rules.setdefault(rule, position))
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


REMEMBERED_BASES = 2
"""Runs over the image's rules kept (one per plugins and engine the set was checked with; a run over Falco's
default rules, with its words, takes about 0.7 MiB)."""


class _Base:
    """The run over the rules files Falco loads before the set (the image's), and what they define and use."""

    def __init__(self, key: Hashable, run: _Run, analyses: Sequence[_FileWords], files: Sequence[RulesFile]) -> None:
        self.key, self.run = key, run
        self.used = frozenset(word for found in analyses for word in found.used)
        self.rules = frozenset(rule for found in analyses for rule in found.rules)
        self.referable = [
            (_interned(words(str(item[kind]))), _interned(_used(item)))
            for rules_file in files
            for item in rules_file.items
            if isinstance(item, dict)
            for kind in REFERABLE_KINDS
            if kind in item
        ]
        """Each list and macro: the words of its name, and those of its definition."""

    def reached(self, changed: set[str]) -> set[str]:
        """The words of the names of the lists and macros changed, and of those whose definitions use them, however
        indirectly."""
        reached = set(changed)
        grew = True
        while grew:
            grew = False
            for name, used in self.referable:
                if not reached.issuperset(name) and not reached.isdisjoint(used):
                    reached.update(name)
                    grew = True
        return reached


class IncrementalCheck:
    """``check_rule_set`` (the set as the agent delivers it: not standalone) with the groups of files remembered
    across calls. Safe across threads."""

    def __init__(self, max_bytes: int = 2 * 1024 * 1024, max_entry: int = 512 * 1024) -> None:
        self.max_entry = max_entry
        self._words = _Lru(max_bytes)
        self._groups = _Lru(max_bytes)
        self._bases: OrderedDict[Hashable, _Base] = OrderedDict()
        self._lock = threading.Lock()
        self.checked_files = 0
        """Files checked so far (a remembered group's are not): what the remembering saves shows here."""

    def check(self, files: Sequence[RulesFile], context: LoadContext | None = None) -> list[Finding]:
        """Every problem of the set, as ``check_rule_set(files, context=context)`` finds it."""
        catalogue = FieldCatalogue.load()
        if context is not None and context.plugins is not None:
            catalogue = catalogue.loading(context.plugins)
        after = files
        if context is not None and context.preceding:
            files = [*context.preceding, *files]
            context = replace(context, preceding=())
        ids = [_content_id(rules_file) for rules_file in files]
        with self._lock:
            remembered: list[_FileWords | None] = [self._words.get(id_) if id_ else None for id_ in ids]
        analyses = [found or self._analysis(files[p], ids[p]) for p, found in enumerate(remembered)]
        preceding = len(files) - len(after)
        context_key = _context_key(context)
        if preceding and all(ids[:preceding]) and not any(found.joins_all for found in analyses[:preceding]):
            groups, traces = self._on_base(files, ids, analyses, preceding, catalogue, context, context_key)
        else:
            groups = _groups(analyses)
            traces = [self._group_trace(files, ids, group, catalogue, context, context_key) for group in groups]
        return _findings(groups, traces, context)

    def _group_trace(
        self,
        files: Sequence[RulesFile],
        ids: Sequence[str | None],
        group: Sequence[int],
        catalogue: FieldCatalogue,
        context: LoadContext | None,
        context_key: Hashable,
        base: _Base | None = None,
    ) -> _GroupTrace:
        """A group's trace, remembered or checked (``base``: after the image's rules, from their run)."""
        key: Hashable = None
        if all(ids[p] for p in group):
            key = (tuple((files[p].name, ids[p]) for p in group), context_key, base.key if base else None)
            with self._lock:
                found: _GroupTrace | None = self._groups.get(key)
            if found is not None:
                return found
        members = [files[p] for p in group]
        if base is None:
            trace = _check_group(members, catalogue, context)
        else:
            run = base.run.copy()
            run.load(members, last=True)
            trace = run.trace(len(base.run.files))
        size = sum(len(f.text or "") for f in members)
        with self._lock:
            self.checked_files += len(members)
            if key is not None and size <= self.max_entry:
                self._groups.put(key, size, trace)
        return trace

    def _on_base(
        self,
        files: Sequence[RulesFile],
        ids: Sequence[str | None],
        analyses: Sequence[_FileWords],
        preceding: int,
        catalogue: FieldCatalogue,
        context: LoadContext | None,
        context_key: Hashable,
    ) -> tuple[list[list[int]], list[_GroupTrace]]:
        """The groups and traces of a set loaded after the image's rules (the first ``preceding`` files).

        The image's rules are checked once and their run kept (``_Base``); a group of the set's files that leaves
        what they define alone goes on from a copy of that run. Groups that change a list, macro or rule of the
        image's, and the groups that use what such a change reaches, are checked with the image's rules from the
        start, as one group."""
        base_files = list(range(preceding))
        base = self._base([files[p] for p in base_files], ids[:preceding], analyses[:preceding], catalogue, context,
                          context_key)  # fmt: skip
        changing: list[list[int]] = []
        reading: list[list[int]] = []
        for group in _groups(analyses[preceding:]):
            group = [p + preceding for p in group]
            changes = any(analyses[p].joins_all or not base.used.isdisjoint(analyses[p].names)
                          or not base.rules.isdisjoint(analyses[p].rules) for p in group)  # fmt: skip
            (changing if changes else reading).append(group)
        if not changing:
            traces = [self._group_trace(files, ids, group, catalogue, context, context_key, base) for group in reading]
            return [base_files, *reading], [base.run.trace(), *traces]
        reached = base.reached({word for group in changing for p in group for word in analyses[p].names})
        readers = []
        for group in reading:
            if any(not reached.isdisjoint(analyses[p].used) for p in group):
                changing.append(group)
            else:
                readers.append(group)
        merged = base_files + sorted(p for group in changing for p in group)
        traces = [self._group_trace(files, ids, merged, catalogue, context, context_key)]
        traces += [self._group_trace(files, ids, group, catalogue, context, context_key, base) for group in readers]
        return [merged, *readers], traces

    def _base(
        self,
        files: Sequence[RulesFile],
        ids: Sequence[str | None],
        analyses: Sequence[_FileWords],
        catalogue: FieldCatalogue,
        context: LoadContext | None,
        context_key: Hashable,
    ) -> _Base:
        key = (tuple((f.name, id_) for f, id_ in zip(files, ids, strict=True)), context_key)
        with self._lock:
            found = self._bases.get(key)
            if found is not None:
                self._bases.move_to_end(key)
                return found
        run = _Run(catalogue, context)
        run.load(files, last=False)
        base = _Base(key, run, analyses, files)
        with self._lock:
            self.checked_files += len(files)
            self._bases[key] = base
            while len(self._bases) > REMEMBERED_BASES:
                self._bases.popitem(last=False)
        return base

    def _analysis(self, rules_file: RulesFile, content: str | None) -> _FileWords:
        found = _file_words(rules_file.items)
        size = len(rules_file.text or "")
        if content is not None and size <= self.max_entry:
            with self._lock:
                self._words.put(content, size, found)
        return found


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
