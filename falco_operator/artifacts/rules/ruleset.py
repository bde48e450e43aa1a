"""Checks across a whole rule set, the way Falco loads it: files in order, items in order, then compilation.

Loading (Falco's "collector"): lists, macros and rules are defined, appended to or overridden in order; an
append or override needs an existing item; an ``enabled``-only rule needs an existing rule. Every definition
and update takes the next number of one counter shared by all items; an item *sees* the macros and lists first
defined before its own last update (a macro may not use a macro defined after it; a rule may use any macro).

Falco compiles after every file it loads, the rules collected so far: a rule may use a macro defined later in its
own file, not one that only a later file defines, and a later definition does not hide an item that fails when its
file loads. So does this check, incrementally: after each file it compiles again only the items that file defined
or changed and those they reach (``dependencies``), so many files cost what one file of the same items costs.

Compiling: every list is expanded (a list item naming an earlier list is replaced by its items); every macro's
condition is parsed after list names are substituted into it as text (Falco substitutes lists textually, so a
name that is no list stays a literal string) and its macro references are resolved; every rule, enabled or
not, gets its exceptions turned into condition text, its output checked, its condition parsed and resolved,
and every field it reaches (also through macros) looked up in the field catalogue.

Findings carry the file, the line in it and, for conditions, the column inside the condition.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from functools import cache
from typing import Any, Literal

from ...records import record
from ..messages import capped, quoted
from ..validation import Invalid, check_rules
from ..yamldoc import line_of
from .condition import (
    Check,
    ConditionError,
    FieldRef,
    ListValue,
    MacroRef,
    Node,
    Position,
    Value,
    compile_problem,
    parse_condition,
    parse_field_or_transformer,
    walk,
)
from .dependencies import Dependencies
from .fields import FieldCatalogue, read_data
from .output import output_problem
from .requirements import Requirement, engine_problem, parse_version, plugin_requirement_verdict

Severity = Literal["error", "warning"]
SYSCALL = "syscall"
_LIST_DELIMITERS = " \t\n\r(),="
_BLANKS = " \t\n\r"
LIST_OPERATORS = ("in", "intersects", "pmatch")
_MODIFIERS = ("oneof", "anyof", "allof")


@record(frozen=True)
class Finding:
    file: str
    line: int | None
    col: int | None
    severity: Severity
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", capped(self.message))

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "") + (f":{self.col}" if self.col else "")
        return f"{where}: {self.severity}: {self.message}"


@record(frozen=True)
class LoadContext:
    """What the Falco that loads the set provides: None means unknown (then the check cannot judge it)."""

    plugins: Mapping[str, str | None] | None = None
    """Plugin name -> version ("0.18.0"); a version of None is unknown."""
    engine_version: str | None = None
    """Falco's engine version ("0.62.0") when known."""
    preceding: Sequence[RulesFile] = ()
    """Rules files Falco loads before the set (the image's default rules): the set's files may use and change
    what they define; their own findings are not the set's (they name these files)."""


@record(frozen=True)
class RulesFile:
    """One file of the set: its name and its items as loaded (``yamldoc.load_yaml``: lines are kept)."""

    name: str
    items: Sequence[Any]
    text: str | None = None
    """The file's text, when known: positions inside folded conditions are then mapped to their own lines."""


@record
class _Where:
    file: str
    line: int | None
    text: str | None = None


@record
class _List:
    name: str
    items: list[str]
    index: int
    visibility: int
    where: _Where


@record
class _Macro:
    name: str
    condition: str
    index: int
    visibility: int
    where: _Where
    condition_line: int | None


@record
class _Exception:
    name: str
    fields: str | list[str] | None
    comps: str | list[str] | None
    values: list[Any]
    where: _Where


@record
class _Rule:
    name: str
    condition: str
    output: str
    source: str
    where: _Where
    condition_line: int | None
    output_line: int | None
    exceptions: list[_Exception] = field(default_factory=list)
    skip_if_unknown_filter: bool = False
    index: int = 0


class _Stop(Exception):
    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


@record
class _Collector:
    catalogue: FieldCatalogue
    standalone: bool
    context: LoadContext | None = None
    plugin_requirements: list[tuple[list[Requirement], _Where]] = field(default_factory=list)
    lists: dict[str, _List] = field(default_factory=dict)
    macros: dict[str, _Macro] = field(default_factory=dict)
    rules: dict[str, _Rule] = field(default_factory=dict)
    counter: int = 0
    findings: list[Finding] = field(default_factory=list)
    touched: set[tuple[str, str]] = field(default_factory=set)
    """The lists, macros and rules defined or changed since the last compile: ("list"|"macro"|"rule", name)."""

    def next_index(self) -> int:
        self.counter += 1
        return self.counter - 1

    def warn(self, where: _Where, message: str) -> None:
        self.findings.append(Finding(where.file, where.line, None, "warning", message))

    def skips_source(self, source: str) -> bool:
        """Falco skips rules of a source no loaded plugin provides; unknown plugins: sources the catalogue lacks."""
        loaded = self.catalogue.loaded_sources()
        if loaded is not None:
            return source not in loaded
        return source != SYSCALL and source not in self.catalogue.sources()


def check_rule_set(
    files: Sequence[RulesFile],
    catalogue: FieldCatalogue | None = None,
    *,
    standalone: bool = False,
    context: LoadContext | None = None,
) -> list[Finding]:
    """Every problem of the set, errors first in load order. ``standalone``: the files are checked without the
    rest of the set they will join, so references to macros, lists and rules defined elsewhere are not errors.
    ``context``: what the Falco that loads the set provides (plugins, engine version); None: unknown."""
    catalogue = catalogue or FieldCatalogue.load()
    if context is not None and context.plugins is not None:
        catalogue = catalogue.loading(context.plugins)
    collector = _Collector(catalogue, standalone, context)
    if context is not None and context.preceding:
        files = [*context.preceding, *files]
    compiled = _Compiled()
    failure: _Failure | None = None
    errors: list[Finding] = []
    for position, rules_file in enumerate(files):
        try:
            check_rules(rules_file.items)
        except Invalid as invalid:
            errors.append(Finding(rules_file.name, invalid.problem.line, None, "error", invalid.problem.message))
            continue
        try:
            for item in rules_file.items:
                _collect(collector, rules_file, item)
        except _Stop as stop:
            errors.append(stop.finding)
        if not errors and failure is None:  # Falco compiles what it collected after each file
            failure = _compile(collector, compiled, last=position == len(files) - 1)
            if failure is not None:
                failure = _defined_later(failure, rules_file, files[position + 1 :])
    if not errors:
        errors.extend(_unmet_plugin_requirements(collector))
    if errors:
        return errors + collector.findings
    if failure is not None:
        errors.append(failure.finding)
    return errors + collector.findings + compiled.rule_warnings(collector)


# -- loading ---------------------------------------------------------------------------------------------


def _line(value: Any, key: Any = None) -> int | None:
    return line_of(value, key)


def _fail(where: _Where, message: str) -> _Stop:
    return _Stop(Finding(where.file, where.line, None, "error", message))


def _mode(item: dict[str, Any], key: str) -> str | None:
    """``append``/``replace`` for a key of an item, from ``override`` or the item-wide ``append: true``."""
    override = item.get("override") or {}
    if key in override:
        return str(override[key])
    if item.get("append") is True and key in item:
        return "append"
    return None


def _collect(collector: _Collector, rules_file: RulesFile, item: Any) -> None:
    if not isinstance(item, dict):
        return
    where = _Where(rules_file.name, _line(item), rules_file.text)
    if "list" in item:
        _collect_list(collector, item, where)
    elif "macro" in item:
        _collect_macro(collector, item, where)
    elif "rule" in item:
        _collect_rule(collector, item, where)
    elif "required_plugin_versions" in item:
        _check_plugin_versions(collector, item, where)
    elif "required_engine_version" in item:
        _check_engine_version(collector, item["required_engine_version"], where)


def _collect_list(collector: _Collector, item: dict[str, Any], where: _Where) -> None:
    name = str(item["list"])
    values = [str(value) for value in item.get("items") or []]
    mode = _mode(item, "items")
    previous = collector.lists.get(name)
    if mode in ("append", "replace"):
        if previous is None:
            if collector.standalone:
                return
            raise _fail(where, f"list {quoted(name)} is appended to or overridden, but no list by that name exists "
                               "before it")  # fmt: skip
        previous.items = previous.items + values if mode == "append" else values
        previous.visibility = collector.next_index()
        collector.touched.add(("list", name))
        return
    index = collector.next_index()
    collector.touched.add(("list", name))
    if previous is not None:
        collector.lists[name] = _List(name, values, previous.index, index, where)
    else:
        collector.lists[name] = _List(name, values, index, index, where)


def _collect_macro(collector: _Collector, item: dict[str, Any], where: _Where) -> None:
    name = str(item["macro"])
    condition = str(item.get("condition") or "")
    mode = _mode(item, "condition")
    previous = collector.macros.get(name)
    condition_line = _line(item, "condition")
    if mode in ("append", "replace"):
        if previous is None:
            if collector.standalone:
                return
            raise _fail(where, f"macro {quoted(name)} is appended to or overridden, but no macro by that name exists "
                               "before it")  # fmt: skip
        previous.condition = f"{previous.condition} {condition}" if mode == "append" else condition
        previous.visibility = collector.next_index()
        collector.touched.add(("macro", name))
        return
    index = collector.next_index()
    collector.touched.add(("macro", name))
    first = previous.index if previous is not None else index
    collector.macros[name] = _Macro(name, condition, first, index, where, condition_line)


_RULE_UPDATABLE = ("condition", "output", "desc", "priority", "tags", "exceptions", "enabled", "capture",
                   "capture_duration", "warn_evttypes", "skip-if-unknown-filter")  # fmt: skip


def _collect_rule(collector: _Collector, item: dict[str, Any], where: _Where) -> None:
    name = str(item["rule"])
    previous = collector.rules.get(name)
    source = str(item.get("source") or SYSCALL)
    if previous is not None and "source" in item and previous.source != source:
        raise _fail(where, f"rule {quoted(name)} is re-defined with a different source ({previous.source} before)")
    updates = {key: _mode(item, key) for key in _RULE_UPDATABLE if _mode(item, key)}
    if set(item) - {"rule"} == {"enabled"}:
        if previous is None:
            if collector.standalone:
                return
            raise _fail(where, f"rule {quoted(name)} sets only enabled, but no rule by that name exists before it")
        return
    if updates:
        if previous is None:
            if collector.standalone:
                return
            raise _fail(where, f"rule {quoted(name)} is appended to or overridden, but no rule by that name exists "
                               "before it")  # fmt: skip
        _update_rule(collector, previous, item, updates, where)
        previous.index = collector.next_index()
        collector.touched.add(("rule", name))
        return
    rule = _Rule(name, str(item.get("condition") or ""), str(item.get("output") or ""), source, where,
                 _line(item, "condition"), _line(item, "output"),
                 skip_if_unknown_filter=bool(item.get("skip-if-unknown-filter")))  # fmt: skip
    if collector.skips_source(source):
        if collector.catalogue.loaded_sources() is not None:
            collector.warn(where, f"rule {quoted(name)}: no plugin this Falco loads provides the source "
                                  f"{quoted(source)}; Falco skips the rule")  # fmt: skip
        else:
            collector.warn(where, f"rule {quoted(name)}: unknown source {quoted(source)}; Falco skips it unless a "
                                  "plugin provides it")  # fmt: skip
    rule.exceptions = [_exception(collector, rule, raw, where) for raw in item.get("exceptions") or []]
    rule.index = collector.next_index()
    collector.rules[name] = rule
    collector.touched.add(("rule", name))


def _update_rule(
    collector: _Collector, rule: _Rule, item: dict[str, Any], updates: dict[str, str | None], where: _Where
) -> None:
    for key, mode in updates.items():
        value = item[key]
        if key == "condition":
            rule.condition = f"{rule.condition} {value}" if mode == "append" else str(value)
            rule.condition_line = _line(item, "condition")
        elif key == "output":
            rule.output = f"{rule.output} {value}" if mode == "append" else str(value)
            rule.output_line = _line(item, "output")
        elif key == "exceptions":
            incoming = [_exception(collector, rule, raw, where, appending=mode == "append") for raw in value or []]
            if mode == "replace":
                rule.exceptions = incoming
                continue
            for exception in incoming:
                existing = next((e for e in rule.exceptions if e.name == exception.name), None)
                if existing is None:
                    if exception.fields is None or not exception.values:
                        label = f"rule {quoted(rule.name)}: a new exception {quoted(exception.name)}"
                        raise _fail(where, f"{label} needs fields and values")
                    rule.exceptions.append(exception)
                elif exception.fields is not None or exception.comps is not None:
                    label = f"rule {quoted(rule.name)}: appending to exception {quoted(exception.name)}"
                    raise _fail(where, f"{label} may add values only, not fields or comps")
                else:
                    existing.values.extend(exception.values)
        elif key == "skip-if-unknown-filter":
            rule.skip_if_unknown_filter = bool(value)


def _exception(collector: _Collector, rule: _Rule, raw: Any, where: _Where, *, appending: bool = False) -> _Exception:
    if not isinstance(raw, dict):
        raise _fail(where, f"rule {quoted(rule.name)}: every exception must be a mapping")
    exception_where = _Where(where.file, _line(raw) or where.line)
    name = str(raw.get("name") or "")
    fields = raw.get("fields")
    comps = raw.get("comps")
    values = list(raw.get("values") or [])
    if fields is None and not appending:
        raise _fail(exception_where, f"rule {quoted(rule.name)}: exception {quoted(name)} needs fields")
    exception = _Exception(name, _str_or_list(fields), _str_or_list(comps), values, exception_where)
    if fields is not None:
        _check_exception_shape(collector, rule, exception)
    return exception


def _str_or_list(value: Any) -> str | list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(entry) for entry in value]
    return str(value)


def _check_exception_shape(collector: _Collector, rule: _Rule, exception: _Exception) -> None:
    label = f"rule {quoted(rule.name)}, exception {quoted(exception.name)}"
    where = exception.where
    if isinstance(exception.fields, list):
        if exception.comps is None:
            exception.comps = ["="] * len(exception.fields)
        if not isinstance(exception.comps, list) or len(exception.comps) != len(exception.fields):
            raise _fail(where, f"{label}: fields and comps must be lists of the same length")
        exception.comps = [comp.strip() for comp in exception.comps]
        for comp in exception.comps:
            if not _is_operator(comp):
                raise _fail(where, f"{label}: {quoted(comp)} is not a comparison operator")
        for name in exception.fields:
            _check_exception_field(collector, label, name, where, rule.source)
        return
    if exception.comps is None:
        exception.comps = "in"
    if isinstance(exception.comps, list):
        raise _fail(where, f"{label}: fields is one field, so comps must be one operator too")
    exception.comps = exception.comps.strip()
    if exception.comps not in LIST_OPERATORS and not _is_modified_operator(exception.comps):
        raise _fail(where, f"{label}: with a single field, comps must be in, pmatch, intersects or an operator with "
                           "oneof/anyof/allof")  # fmt: skip
    if exception.fields is not None:
        _check_exception_field(collector, label, exception.fields, where, rule.source)


def _check_exception_field(collector: _Collector, label: str, name: str, where: _Where, source: str) -> None:
    try:
        tree = parse_field_or_transformer(name)
    except ConditionError:
        raise _fail(where, f"{label}: {quoted(name)} is not a field") from None
    for node in walk(tree):
        if isinstance(node, FieldRef):
            found = collector.catalogue.lookup(node.name, node.arg, source)
            if found.severity == "error":
                raise _fail(where, f"{label}: {found.problem}")


_OPERATORS = {"exists", "<=", "<", ">=", ">", "==", "=", "!=", "glob", "iglob", "contains", "icontains", "bcontains",
              "startswith", "bstartswith", "endswith", "regex", "intersects", "in", "pmatch"}  # fmt: skip
_MODIFIABLE = {"==", "=", "!=", "glob", "iglob", "contains", "icontains", "bcontains", "startswith", "bstartswith",
               "endswith", "regex"}  # fmt: skip


def _is_operator(comp: str) -> bool:
    return comp in _OPERATORS or _is_modified_operator(comp)


def _is_modified_operator(comp: str) -> bool:
    parts = comp.split()
    return len(parts) == 2 and parts[0] in _MODIFIABLE and parts[1] in _MODIFIERS


_SEMVER = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+")


def _check_engine_version(collector: _Collector, value: Any, where: _Where) -> None:
    is_number = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if not is_number and not _SEMVER.match(str(value)):
        raise _fail(where, f"required_engine_version {quoted(value)} is not a version: write x.y.z (or a whole number)")
    if collector.context is None:
        return
    if collector.context.engine_version is None:
        collector.warn(where, f"required_engine_version {quoted(value)} is not checked: the engine version of the "
                              "Falco that loads these rules is not known")  # fmt: skip
        return
    problem = engine_problem(value, collector.context.engine_version)
    if problem is not None:
        raise _fail(where, problem)


def _check_plugin_versions(collector: _Collector, item: dict[str, Any], where: _Where) -> None:
    for entry in item.get("required_plugin_versions") or []:
        alternatives = [entry, *(entry.get("alternatives") or [])] if isinstance(entry, dict) else []
        names: set[str] = set()
        requirements = []
        for requirement in alternatives:
            name, version = str(requirement.get("name")), str(requirement.get("version"))
            if parse_version(version) is None:
                raise _fail(where, f"invalid required version {quoted(version)} for plugin {quoted(name)}: write x.y.z")
            if name in names:
                raise _fail(where, f"plugin {quoted(name)} has more than one alternative version requirement")
            names.add(name)
            requirements.append(Requirement(name, version))
        if requirements:
            collector.plugin_requirements.append((requirements, where))


def _unmet_plugin_requirements(collector: _Collector) -> list[Finding]:
    """Falco checks every ``required_plugin_versions`` entry of the set once the files are read; it does not start
    (or validate) when one is not met."""
    plugins = collector.context.plugins if collector.context is not None else None
    if plugins is None:
        return []
    errors = []
    for alternatives, where in collector.plugin_requirements:
        verdict = plugin_requirement_verdict(alternatives, plugins)
        if verdict is None:
            continue
        if verdict.severity == "warning":
            collector.warn(where, verdict.message)
        else:
            errors.append(Finding(where.file, where.line, None, "error", verdict.message))
    return errors


# -- compiling -------------------------------------------------------------------------------------------


@record(frozen=True)
class _Failure:
    finding: Finding
    undefined_macro: str | None = None
    """The macro an item uses that is not defined for it (it may be one a later file defines)."""


@record
class _Compiled:
    """What the compiles after the files so far found, for the next compile to reuse."""

    lists: list[str] = field(default_factory=list)
    """List names in the order Falco substitutes them (their first definition)."""
    expanded: dict[str, list[str]] = field(default_factory=dict)
    macro_trees: dict[str, Node] = field(default_factory=dict)
    warnings: dict[str, list[Finding]] = field(default_factory=dict)
    """Each rule's warnings from its last compile."""
    links: Dependencies = field(default_factory=Dependencies)
    record: list[str] | None = None
    """When a list: the names of the rules compiled, in order (``incremental`` keeps their warnings by file)."""

    def rule_warnings(self, collector: _Collector) -> list[Finding]:
        rules = sorted(collector.rules.values(), key=lambda r: r.index)
        return [warning for rule in rules for warning in self.warnings.get(rule.name, [])]


def _compile(collector: _Collector, compiled: _Compiled, *, last: bool) -> _Failure | None:
    """Compile what the last file defined or changed and what that reaches: the same first error as compiling
    everything collected so far, since every other item compiled as it is before. ``last``: no file follows (its
    links need not be remembered)."""
    touched, collector.touched = collector.touched, set()
    links = compiled.links
    changed_lists = {name for kind, name in touched if kind == "list"}
    new_lists = [name for name in changed_lists if name not in compiled.expanded]
    compiled.lists.extend(sorted(new_lists, key=lambda name: collector.lists[name].index))
    if not last:
        for name in changed_lists:
            links.list_items(name, collector.lists[name].items)
    reached = links.lists_reached(changed_lists)
    for name in reached:
        if name in collector.lists:
            compiled.expanded[name] = _expanded(collector.lists, collector.lists[name])
    lists = [(name, compiled.expanded[name]) for name in compiled.lists]
    naming = links.naming(reached) if reached else set()
    macro_names = {name for kind, name in touched | naming if kind == "macro"}
    macros = sorted((collector.macros[name] for name in macro_names), key=lambda m: m.index)
    for macro in macros:
        condition = _substitute_lists(macro.condition, lists)
        try:
            compiled.macro_trees[macro.name] = tree = parse_condition(condition)
        except ConditionError as error:
            label = f"macro {quoted(macro.name)}"
            return _Failure(_condition_finding(macro.where, macro.condition_line, label, error, condition))
        if not last:
            links.text(("macro", macro.name), macro.condition)
            links.uses(("macro", macro.name), _macro_names(tree))
    affected = links.using(macro_names) if macro_names else set()
    to_resolve = macro_names | {name for kind, name in affected if kind == "macro"}
    for macro in sorted((collector.macros[name] for name in to_resolve), key=lambda m: m.index):
        visible = {m.name for m in collector.macros.values() if m.index < macro.visibility}
        problem = _unresolved(compiled.macro_trees[macro.name], compiled.macro_trees, visible, collector.standalone)
        if problem is not None:
            message, position, undefined = problem
            label = f"macro {quoted(macro.name)}"
            finding = _at(macro.where, macro.condition_line, position, f"{label}: {message}", macro.condition)
            return _Failure(finding, undefined)
    rule_names = {name for kind, name in touched | naming | affected if kind == "rule"}
    for rule in sorted((collector.rules[name] for name in rule_names), key=lambda r: r.index):
        if collector.skips_source(rule.source):
            continue
        failure = _compile_rule(collector, compiled, rule, lists, remember=not last)
        if failure is not None:
            return failure
    return None


def _compile_rule(
    collector: _Collector, compiled: _Compiled, rule: _Rule, lists: list[tuple[str, list[str]]], *, remember: bool
) -> _Failure | None:
    """Compile one rule (its exceptions, output, condition and every field it reaches); its warnings replace
    those of its last compile. ``remember``: keep its links for later compiles."""
    macro_trees = compiled.macro_trees
    warnings = compiled.warnings[rule.name] = []
    if compiled.record is not None:
        compiled.record.append(rule.name)
    try:
        condition = _with_exceptions(rule)
    except _Stop as stop:
        return _Failure(stop.finding)
    problem_in_output = output_problem(rule.output, collector.catalogue, rule.source)
    if problem_in_output is not None:
        severity, message = problem_in_output
        if severity == "error" and not rule.skip_if_unknown_filter:
            return _Failure(Finding(rule.where.file, rule.output_line, None, "error",
                                    f"rule {quoted(rule.name)} output: {message}"))  # fmt: skip
        warnings.append(Finding(rule.where.file, rule.output_line, None, "warning",
                                f"rule {quoted(rule.name)} output: {message}"))  # fmt: skip
    substituted = _substitute_lists(condition, lists)
    try:
        tree = parse_condition(substituted)
    except ConditionError as error:
        return _Failure(_condition_finding(rule.where, rule.condition_line, f"rule {quoted(rule.name)}", error,
                                           substituted))  # fmt: skip
    if remember:
        compiled.links.text(("rule", rule.name), condition)
        compiled.links.uses(("rule", rule.name), _macro_names(tree))
    problem = _unresolved(tree, macro_trees, set(macro_trees), collector.standalone)
    if problem is not None:
        message, position, undefined = problem
        finding = _at(rule.where, rule.condition_line, position, f"rule {quoted(rule.name)}: {message}", substituted)
        return _Failure(finding, undefined)
    for node, owner in _reached(tree, macro_trees):
        node_problem = _node_problem(node, collector.catalogue, rule.source)
        if node_problem is None:
            continue
        severity, message = node_problem
        label = f"rule {quoted(rule.name)}" + (f" (through macro {quoted(owner)})" if owner else "")
        if severity == "error" and not rule.skip_if_unknown_filter:
            line = rule.condition_line if owner is None else collector.macros[owner].condition_line
            where = rule.where if owner is None else collector.macros[owner].where
            text = condition if owner is None else collector.macros[owner].condition
            return _Failure(_at(where, line, node.position, f"{label}: {message}", _substitute_lists(text, lists)))
        warnings.append(Finding(rule.where.file, rule.where.line, None, "warning", f"{label}: {message}"))
    return None


def _macro_names(tree: Node) -> set[str]:
    return {node.name for node in walk(tree) if isinstance(node, MacroRef)}


def _defined_later(failure: _Failure, loaded: RulesFile, later: Sequence[RulesFile]) -> _Failure:
    """A failure on a macro that only a file loading later defines says so: Falco compiles after each file."""
    name = failure.undefined_macro
    if name is None:
        return failure
    for rules_file in later:
        if any(isinstance(item, dict) and "macro" in item and str(item["macro"]) == name
               and _mode(item, "condition") is None for item in rules_file.items):  # fmt: skip
            message = (f"{failure.finding.message} ({rules_file.name} defines it, but loads after {loaded.name}: "
                       "Falco compiles the rules after each file, so a file may use only the macros defined in it "
                       "or in a file that loads before it)")  # fmt: skip
            return _Failure(dataclasses.replace(failure.finding, message=message), name)
    return failure


def _expanded(lists: dict[str, _List], entry: _List) -> list[str]:
    """A list's items with the items of each earlier list it names in their place (one level, as Falco does)."""
    items: list[str] = []
    for value in entry.items:
        reference = lists.get(value)
        if reference is not None and reference.index < entry.visibility:
            items.extend(reference.items)
        else:
            items.append(value)
    return items


def _quote(item: str) -> str:
    return f'"{item}"' if " " in item and item[:1] not in ("'", '"') else item


def _substitute_lists(condition: str, lists: Iterable[tuple[str, list[str]]]) -> str:
    """Falco's textual list substitution: each delimited occurrence of a list name becomes its items, one list
    after the other (items of a list may name a later list, which is substituted in turn)."""
    for name, items in lists:
        if name and name in condition:
            condition = _substitute_list(condition, name, ", ".join(_quote(item) for item in items))
    return condition


def _substitute_list(condition: str, name: str, substitute: str) -> str:
    """Every delimited occurrence of ``name`` replaced by ``substitute`` in one scan, as Falco does it in place:
    blanks around the name go, one space goes on each side (none before at the start), and an empty substitute
    takes a comma next to it along. Falco resumes its search right after the text it put in, one character further
    when the substitution began the condition; the result is the same, in time linear in the condition."""
    done = _Tail()  # the condition before ``rest``, as substituted so far
    rest = 0  # where the part not yet copied begins
    found = condition.find(name)
    while found >= 0:
        end = found + len(name)
        before = condition[found - 1] if found > rest else done.last()
        delimited_before = before is None or before in _LIST_DELIMITERS
        if not delimited_before or (end < len(condition) and condition[end] not in _LIST_DELIMITERS):
            found = condition.find(name, found + 1)
            continue
        start = found
        while start > rest and condition[start - 1] in _BLANKS:
            start -= 1
        done.add(condition, rest, start)
        while (last := done.last()) is not None and last in _BLANKS:
            done.drop_last()
        while end < len(condition) and condition[end] in _BLANKS:
            end += 1
        if not substitute:
            if done.last() == ",":
                done.drop_last()
            elif end < len(condition) and condition[end] == ",":
                end += 1
        at_start = done.length == 0
        if not at_start:
            done.add(" ")
        done.add(substitute)
        done.add(" ")
        rest = end
        found = condition.find(name, rest + 1 if at_start else rest)
    done.add(condition, rest, len(condition))
    return done.text()


class _Tail:
    """A string built from slices, whose last characters can be taken off without copying what came before."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, int, int]] = []
        self.length = 0

    def add(self, text: str, start: int = 0, end: int | None = None) -> None:
        end = len(text) if end is None else end
        if end > start:
            self.parts.append((text, start, end))
            self.length += end - start

    def last(self) -> str | None:
        if not self.parts:
            return None
        text, _, end = self.parts[-1]
        return text[end - 1]

    def drop_last(self) -> None:
        text, start, end = self.parts.pop()
        self.length -= 1
        if end - 1 > start:
            self.parts.append((text, start, end - 1))

    def text(self) -> str:
        return "".join(text[start:end] for text, start, end in self.parts)


def _unresolved(
    tree: Node,
    macros: dict[str, Node],
    visible: set[str],
    standalone: bool,
    seen: tuple[str, ...] = (),
    sound: set[str] | None = None,
) -> tuple[str, Position, str | None] | None:
    """The first undefined or self-referring macro a tree reaches, with the position of the reference in it (and
    the name of an undefined one).
    ``sound``: macros already walked without a problem; each is walked once however often it is used (a chain of
    macros that each use the previous one twice would otherwise take time exponential in its length)."""
    sound = set() if sound is None else sound
    for node in walk(tree):
        if not isinstance(node, MacroRef):
            continue
        if node.name not in visible or node.name not in macros:
            if standalone:
                continue
            return f"undefined macro {quoted(node.name)}", node.position, node.name
        if node.name in seen:
            return f"macro {quoted(node.name)} refers to itself", node.position, None
        if node.name in sound:
            continue
        inner = _unresolved(macros[node.name], macros, visible, standalone, (*seen, node.name), sound)
        if inner is not None:
            return inner[0], node.position, inner[2]
        sound.add(node.name)
    return None


def _reached(
    tree: Node, macros: dict[str, Node], owner: str | None = None, listed: set[str] | None = None
) -> list[tuple[Node, str | None]]:
    """Every node a rule's condition reaches, also through the macros it uses (with the macro it is in); the
    nodes of a macro used more than once are listed once."""
    listed = set() if listed is None else listed
    found: list[tuple[Node, str | None]] = []
    for node in walk(tree):
        found.append((node, owner))
        if isinstance(node, MacroRef) and node.name in macros and node.name not in listed:
            listed.add(node.name)
            found.extend(_reached(macros[node.name], macros, node.name, listed))
    return found


def _node_problem(node: Node, catalogue: FieldCatalogue, source: str) -> tuple[Severity, str] | None:
    """(severity, message) for a field the catalogue does not know (in rules of ``source``), or an event type Falco
    has not."""
    compiled = compile_problem(node, catalogue)
    if compiled is not None:
        return "error", compiled
    if isinstance(node, FieldRef):
        found = catalogue.lookup(node.name, node.arg, source)
        if found.severity == "ok":
            return None
        return ("error" if found.severity == "error" else "warning"), found.problem or ""
    if isinstance(node, Check) and isinstance(node.left, FieldRef):
        typed = _type_problem(node, node.left, catalogue)
        if typed is not None:
            return "error", typed
    if isinstance(node, Check) and isinstance(node.left, FieldRef) and node.left.name == "evt.type":
        values = node.right.items if isinstance(node.right, ListValue) else ()
        if isinstance(node.right, Value):
            values = (node.right.text,)
        for value in values:
            if value not in event_types():
                return "error", f"unknown event type {quoted(value)}"
    return None


_NUMERIC = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "RELTIME", "ABSTIME",
            "DOUBLE", "PORT"}  # fmt: skip
_NUMBER = re.compile(r"^[+-]?(?:0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)$")
_NOT_FOR_NUMBERS = {"contains", "icontains", "bcontains", "startswith", "bstartswith", "endswith", "glob", "iglob",
                    "regex", "pmatch"}  # fmt: skip
_NOT_FOR_STRINGS = {"bcontains", "bstartswith"}


def _type_problem(check: Check, left: FieldRef, catalogue: FieldCatalogue) -> str | None:
    """Operators and values a field's type cannot take, as libsinsp refuses them when it compiles a filter."""
    info = catalogue.lookup(left.name, left.arg).info
    if info is None:
        return None
    operator = check.operator.split()[0]
    if info.type in _NUMERIC:
        if operator in _NOT_FOR_NUMBERS:
            return f"'{operator}' operator not supported for numeric filters ({left.name} is {info.type})"
        values = check.right.items if isinstance(check.right, ListValue) else ()
        if isinstance(check.right, Value):
            values = (check.right.text,)
        for value in values:
            if not _NUMBER.match(value):
                return f"{value} is not a valid number ({left.name} is {info.type})"
    elif info.type == "CHARBUF" and operator in _NOT_FOR_STRINGS:
        return f"'{operator}' operator not supported for string filters ({left.name} is {info.type})"
    return None


@cache
def event_types() -> frozenset[str]:
    """Every name ``evt.type`` may be compared with (Falco's event and syscall names)."""
    document = json.loads(read_data("events.json"))
    return frozenset(document["event_types"])


def _with_exceptions(rule: _Rule) -> str:
    condition = f"({rule.condition})"
    for exception in rule.exceptions:
        fields, comps = exception.fields, exception.comps
        part = ""
        if isinstance(fields, str):
            values = []
            for value in exception.values:
                if isinstance(value, list):
                    label = f"rule {quoted(rule.name)}, exception {quoted(exception.name)}"
                    raise _fail(exception.where, f"{label}: with a single field, values must be a list of strings")
                values.append(_quote(str(value)))
            if values:
                part = f"({fields} {comps} ({', '.join(values)}))"
        elif isinstance(fields, list) and isinstance(comps, list):
            alternatives = []
            for value in exception.values:
                row = value if isinstance(value, list) else [value]
                if len(row) != len(fields):
                    label = f"rule {quoted(rule.name)}, exception {quoted(exception.name)}"
                    needed = f"every values entry needs {len(fields)} values, one per field"
                    raise _fail(exception.where, f"{label}: {needed}")
                checks = []
                for field_name, comp, entry in zip(fields, comps, row, strict=True):
                    if isinstance(entry, list):
                        text = "(" + ", ".join(_quote(str(v)) for v in entry) + ")"
                    elif comp in LIST_OPERATORS or _is_modified_operator(comp):
                        text = str(entry) if str(entry).startswith("(") else f"({entry})"
                    else:
                        text = _quote(str(entry))
                    checks.append(f" {field_name} {comp} {text}")
                alternatives.append("(" + " and ".join(checks) + ")")
            part = "(" + " or ".join(alternatives) + ")" if alternatives else ""
        if part:
            condition += f" and not {part}"
    return condition


def _condition_finding(where: _Where, line: int | None, label: str, error: ConditionError, condition: str) -> Finding:
    return _at(where, line, error.position, f"{label}: {error.message}", condition)


def _at(where: _Where, condition_line: int | None, position: Position, message: str, condition: str = "") -> Finding:
    base = condition_line or where.line
    line = base + position.line - 1 if base is not None else None
    col: int | None = position.col
    if where.text and base is not None and condition:
        line, col = _source_position(where.text, base, condition, position) or (line, col)
    return Finding(where.file, line, col, "error", message)


def _source_position(text: str, start_line: int, condition: str, position: Position) -> tuple[int, int] | None:
    """The file line and column of a position inside a condition (YAML may have folded or indented it): the
    first place, from the condition's own line, that holds the word the condition has there (or, at its end,
    the word before it)."""
    lines = condition.split("\n")
    if position.line > len(lines):
        return None
    line_text = lines[position.line - 1]
    after = re.findall(r"[^\s()]+", line_text[position.col - 1 :])
    before = re.findall(r"[^\s()]+", line_text[: position.col - 1])
    word, past = (after[0], 0) if after else ((before[-1], len(before[-1])) if before else ("", 0))
    if not word:
        return None
    source = text.split("\n")
    for number in range(start_line, min(len(source), start_line + 200) + 1):
        row = source[number - 1]
        found = row.find(word, row.find(":") + 1 if number == start_line else 0)
        if found >= 0:
            return number, found + past + 1
    return None
