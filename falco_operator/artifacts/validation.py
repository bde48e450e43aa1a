"""Structural checks of rules documents and config fragments, before anything is written.

A Falco reload that meets one invalid rules file is refused as a whole, and a Falco that starts with one does
not start, so a document that fails here is never delivered. These checks cover the shape Falco requires of
every item; checks that need the whole rule set (condition grammar, references between files) plug in through
``RulesSetCheck`` in the planner.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .kept_config import kept_config_problem
from .messages import quoted
from .yamldoc import Problem, YamlProblem, line_of, load_yaml

PRIORITIES = ("emergency", "alert", "critical", "error", "warning", "notice", "informational", "info", "debug")
ITEM_KINDS = ("rule", "macro", "list", "required_engine_version", "required_plugin_versions")
RULE_REQUIRED = ("desc", "condition", "output", "priority")
OVERRIDABLE = ("append", "replace")
# Keys of falco.yaml that the agent's layout depends on; a fragment that changed them would unplug the agent.
RESERVED_CONFIG_KEYS = {
    "rules_files": "the agent's rules directory must stay Falco's rules source; use a Rulesfile",
    "rules_file": "the agent's rules directory must stay Falco's rules source; use a Rulesfile",
    "config_files": "the agent's config directory must stay Falco's config source",
    "watch_config_files": "hot reload of the agent's files depends on it",
    "plugins": "plugins are configured with Plugin resources",
    "load_plugins": "plugins are configured with Plugin resources",
}


class Invalid(ValueError):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class _Memo:
    """Verdicts on documents by (kind, bytes), the most recently used first out last: a pass of the agent or a
    reconcile of the operator sees mostly the documents it saw before. Keyed by the bytes themselves, not a digest:
    Python keeps a bytes object's hash, so a pass that asks twice about the same bytes hashes them once, and a
    look-up costs a hash and a comparison instead of a SHA-256 (the bytes kept add a fraction of the parsed value,
    which takes about 13 times its text). Bounded by the bytes of the documents it remembers and safe across
    threads. Callers share what it returns and must not change it."""

    def __init__(self, max_bytes: int, max_entry: int) -> None:
        self.max_bytes, self.max_entry = max_bytes, max_entry
        self._entries: OrderedDict[tuple[str, bytes], tuple[int, Any]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, kind: str, data: bytes, parse: Callable[[bytes], Any]) -> Any:
        key = (kind, bytes(data))
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return _outcome(self._entries[key][1])
        try:
            value: Any = parse(data)
        except Invalid as invalid:
            value = invalid.problem
        if len(data) <= self.max_entry:
            with self._lock:
                if key not in self._entries:
                    self._entries[key] = (len(data), value)
                    self._bytes += len(data)
                while self._bytes > self.max_bytes:
                    _, (size, _) = self._entries.popitem(last=False)
                    self._bytes -= size
        return _outcome(value)


def _outcome(value: Any) -> Any:
    if isinstance(value, Problem):
        raise Invalid(value)
    return value


MEMO = _Memo(max_bytes=2 * 1024 * 1024, max_entry=512 * 1024)


def parse_rules(content: bytes | str) -> list[Any]:
    """The items of a rules document, or ``Invalid`` with the first problem and its line. Remembered by content
    (``MEMO``): the same bytes are parsed once."""
    data = content.encode() if isinstance(content, str) else content
    items: list[Any] = MEMO.get("rules", data, _parse_rules)
    return items


def _parse_rules(data: bytes) -> list[Any]:
    try:
        document = load_yaml(data)
    except YamlProblem as error:
        raise Invalid(error.problem) from None
    return check_rules(document)


def check_rules(document: Any) -> list[Any]:
    if document is None:
        return []
    if not isinstance(document, list):
        raise Invalid(Problem("a rules document must be a list of rule, macro and list items", line_of(document)))
    for index, item in enumerate(document):
        problem = _check_item(index, item)
        if problem:
            raise Invalid(Problem(problem, line_of(item) or line_of(document)))
    return document


def _check_item(index: int, item: Any) -> str | None:
    if not isinstance(item, dict):
        return f"item {index + 1} is not a mapping; each item is a rule, a macro or a list"
    kinds = [kind for kind in ITEM_KINDS if kind in item]
    if len(kinds) != 1:
        found = f"it has {' and '.join(kinds)}" if kinds else "it has none"
        return f"item {index + 1} must have exactly one of {', '.join(ITEM_KINDS)}; {found}"
    kind = kinds[0]
    return _CHECKS[kind](item)


def _name(item: dict[str, Any], kind: str) -> str | None:
    name = item.get(kind)
    if not isinstance(name, str) or not name.strip():
        return None
    return name


def _merge_mode(item: dict[str, Any], label: str) -> tuple[bool, dict[str, Any], str | None]:
    """(append, override map, problem) of an item."""
    append = item.get("append", False)
    if not isinstance(append, bool):
        return False, {}, f"{label}: append must be true or false"
    override = item.get("override")
    if override is None:
        return append, {}, None
    if not isinstance(override, dict) or not override:
        return append, {}, f"{label}: override must map keys to append or replace"
    for key, mode in override.items():
        if mode not in OVERRIDABLE:
            return append, {}, f"{label}: override of {key} must be append or replace, not {quoted(mode)}"
        if key not in item:
            return append, {}, f"{label}: override names {key}, which the item does not set"
    if append:
        return append, {}, f"{label}: append and override cannot be combined"
    return append, dict(override), None


def _check_string_keys(item: dict[str, Any], label: str, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if key in item and not isinstance(item[key], str):
            return f"{label}: {key} must be a string"
    return None


def _check_rule(item: dict[str, Any]) -> str | None:
    name = _name(item, "rule")
    if name is None:
        return "a rule needs a non-empty name"
    label = f"rule {quoted(name)}"
    append, override, problem = _merge_mode(item, label)
    problem = problem or _check_string_keys(item, label, ("desc", "condition", "output"))
    if problem:
        return problem
    if "enabled" in item and not isinstance(item["enabled"], bool):
        return f"{label}: enabled must be true or false"
    if "priority" in item and str(item["priority"]).lower() not in PRIORITIES:
        return f"{label}: priority {quoted(item['priority'])} is not one of {', '.join(p.upper() for p in PRIORITIES)}"
    if "tags" in item and not (isinstance(item["tags"], list) and all(isinstance(t, str) for t in item["tags"])):
        return f"{label}: tags must be a list of strings"
    if "exceptions" in item:
        problem = _check_exceptions(item["exceptions"], label)
        if problem:
            return problem
    defines_rule = not append and not override
    enables_only = set(item) <= {"rule", "enabled"} and "enabled" in item
    if defines_rule and not enables_only:
        missing = [key for key in RULE_REQUIRED if key not in item]
        if missing:
            return f"{label} is missing {', '.join(missing)} (a new rule needs {', '.join(RULE_REQUIRED)})"
    return None


def _check_exceptions(exceptions: Any, label: str) -> str | None:
    if not isinstance(exceptions, list):
        return f"{label}: exceptions must be a list"
    for exception in exceptions:
        if not isinstance(exception, dict) or not isinstance(exception.get("name"), str):
            return f"{label}: every exception needs a name"
    return None


def _check_macro(item: dict[str, Any]) -> str | None:
    name = _name(item, "macro")
    if name is None:
        return "a macro needs a non-empty name"
    label = f"macro {quoted(name)}"
    _, _, problem = _merge_mode(item, label)
    if problem:
        return problem
    if not isinstance(item.get("condition"), str):
        return f"{label} needs a condition (a string)"
    return None


def _check_list(item: dict[str, Any]) -> str | None:
    name = _name(item, "list")
    if name is None:
        return "a list needs a non-empty name"
    label = f"list {quoted(name)}"
    _, _, problem = _merge_mode(item, label)
    if problem:
        return problem
    items = item.get("items")
    if not isinstance(items, list):
        return f"{label} needs items (a list)"
    if any(isinstance(value, (dict, list)) for value in items):
        return f"{label}: items must be plain values or names of other lists"
    return None


def _check_engine_version(item: dict[str, Any]) -> str | None:
    if len(item) != 1 or not isinstance(item["required_engine_version"], (str, int)):
        return "required_engine_version must be a version, alone in its item"
    return None


def _check_plugin_versions(item: dict[str, Any]) -> str | None:
    versions = item["required_plugin_versions"]
    if not isinstance(versions, list):
        return "required_plugin_versions must be a list of {name, version}"
    for entry in versions:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or "version" not in entry:
            return "every entry of required_plugin_versions needs a name and a version"
    return None


_CHECKS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "rule": _check_rule,
    "macro": _check_macro,
    "list": _check_list,
    "required_engine_version": _check_engine_version,
    "required_plugin_versions": _check_plugin_versions,
}


def parse_config(content: bytes | str) -> dict[str, Any]:
    """A falco.yaml fragment: a non-empty mapping that leaves the agent's own keys alone and keeps what the probes
    and the agent need of ``webserver`` and ``metrics`` (``kept_config``); remembered by content."""
    data = content.encode() if isinstance(content, str) else content
    document: dict[str, Any] = MEMO.get("config", data, _parse_config)
    return document


def _parse_config(data: bytes) -> dict[str, Any]:
    try:
        document = load_yaml(data)
    except YamlProblem as error:
        raise Invalid(error.problem) from None
    return check_config(document)


def check_config(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict) or not document:
        raise Invalid(Problem("a config fragment must be a non-empty mapping of falco.yaml keys", line_of(document)))
    for key, why in RESERVED_CONFIG_KEYS.items():
        if key in document:
            raise Invalid(Problem(f"a config fragment cannot set {key}: {why}", line_of(document, key)))
    dropped = kept_config_problem(document)
    if dropped:
        key, message = dropped
        raise Invalid(Problem(message, line_of(document, key)))
    return document
