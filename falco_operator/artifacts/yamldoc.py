"""YAML from users: parsed safely, with caps on size, depth and node count, and line numbers kept for messages."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent

from .messages import capped

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 500_000
NO_ALIASES = "YAML anchors and aliases (&name, *name) are not accepted: write each value out"


@dataclass(frozen=True)
class Problem:
    """What is wrong with a document, where (1-based line, when known), in words a user sees in a report. The
    message is capped (``messages.MAX_MESSAGE``): it may quote what the user wrote."""

    message: str
    line: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", capped(self.message))

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class YamlProblem(ValueError):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def load_yaml(content: bytes | str) -> Any:
    """One YAML document. Mappings and sequences keep their line numbers (see ``line_of``).

    Raises ``YamlProblem`` for text that is too large, not UTF-8, not YAML, several documents, or nested
    deeper than ``MAX_DEPTH``.
    """
    data = content.encode() if isinstance(content, str) else content
    if len(data) > MAX_DOCUMENT_BYTES:
        raise YamlProblem(Problem(f"the document is {len(data)} bytes; the limit is {MAX_DOCUMENT_BYTES}"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise YamlProblem(Problem(f"the document is not UTF-8 text ({error.reason} at byte {error.start})")) from None
    # The round-trip loader builds only plain mappings, sequences and scalars (never arbitrary objects), and
    # keeps line numbers. Anchors and aliases are refused: an alias is one node in the text but a copy in every
    # place that reads it, so a few hundred bytes of nested aliases become gigabytes once a value is printed.
    parser = YAML(typ="rt")
    parser.Composer = _NoAliasComposer
    try:
        value = parser.load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        what = error.problem or "unreadable"
        if error.context and error.context_mark and error.context_mark is not mark:
            what += f" ({error.context} that starts on line {error.context_mark.line + 1})"
        raise YamlProblem(Problem(f"invalid YAML: {what}", mark.line + 1 if mark else None)) from None
    except YAMLError as error:
        raise YamlProblem(Problem(f"invalid YAML: {error}")) from None
    _check_shape(value)
    return value


class _NoAliasComposer(Composer):
    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ComposerError(None, None, NO_ALIASES, event.start_mark)
        return super().compose_node(parent, index)


def _check_shape(root: Any) -> None:
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(root, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        if not isinstance(value, (dict, list)) or id(value) in seen:
            continue
        seen.add(id(value))
        nodes += len(value)
        if depth > MAX_DEPTH:
            raise YamlProblem(Problem(f"the document nests deeper than {MAX_DEPTH} levels", line_of(value)))
        if nodes > MAX_NODES:
            raise YamlProblem(Problem(f"the document has more than {MAX_NODES} nodes"))
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children)


def line_of(value: Any, key: Any = None) -> int | None:
    """1-based line of a loaded mapping or sequence (or of one of its keys), when the loader recorded it."""
    position = getattr(value, "lc", None)
    if position is None:
        return None
    try:
        if key is not None and isinstance(value, dict):
            return int(position.key(key)[0]) + 1
        return int(position.line) + 1
    except (KeyError, TypeError, AttributeError):
        return None


def plain(value: Any) -> Any:
    """The loaded value as plain dicts, lists and scalars (for JSON, comparisons and dumping)."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, str):
        return str(value)
    return value


def dump_yaml(value: Any) -> bytes:
    """Stable block-style YAML with sorted keys, so every agent writes identical bytes for the same value."""
    writer = YAML(typ="safe", pure=True)
    writer.default_flow_style = False
    writer.width = 4096
    buffer = io.StringIO()
    writer.dump(_sorted(plain(value)), buffer)
    return buffer.getvalue().encode()


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value
