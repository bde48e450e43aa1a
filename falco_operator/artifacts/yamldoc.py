"""YAML from users: parsed safely, with caps on size, depth and node count, and line numbers kept for messages.

Two readers give the same values with the same line numbers: libyaml (C, through PyYAML's event parser) reads a
document in a few milliseconds, and the values are built from its events as ruamel's round-trip loader builds them
(YAML 1.2 scalars, ``CommentedMap``/``CommentedSeq`` with their positions); ruamel's round-trip loader itself, about
six to nine times slower, reads whatever the first one leaves to it: a document libyaml refuses (so every message about
invalid YAML is ruamel's), several documents, directives, tags, anchors and aliases, complex or duplicate keys,
merge keys, nesting deeper than the limit.
"""

from __future__ import annotations

import io
import re
from dataclasses import field
from typing import Any

import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver

from ..records import record
from .messages import capped

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 500_000
NO_ALIASES = "YAML anchors and aliases (&name, *name) are not accepted: write each value out"


@record(frozen=True)
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
    value = _fast_load(text)
    if value is _ROUND_TRIP:
        value = round_trip_load(text)
    _check_shape(value)
    return value


def round_trip_load(text: str) -> Any:
    """``text`` read by ruamel's round-trip loader (the reference for ``load_yaml``'s values and positions); raises
    ``YamlProblem`` as ``load_yaml`` does, without the shape checks."""
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
    return value


_ROUND_TRIP: Any = object()
"""``_fast_load``'s answer when only the round-trip loader can judge the document."""
_LIBYAML = getattr(pyyaml, "CSafeLoader", None)
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_NO_KEY: Any = object()
_ROUND_TRIP_ONLY = re.compile(r"[\t\ufeff]|(?:^|[\s\[{,])\?(?=\s|$)|[|>][-+0-9]*#", re.MULTILINE)
"""What the two readers take differently: a tab inside a plain value or a byte order mark inside the text (ruamel
refuses them, libyaml does not), explicit keys (``? key``), a comment glued to a block scalar's header (``>#``)."""


class _NeedsRoundTrip(Exception):
    pass


@record
class _Open:
    """A mapping or sequence being read, with the key read and not yet given a value."""

    container: Any
    key: Any = _NO_KEY
    key_mark: Any = None


@record
class _Scalars:
    """Scalars as ruamel's round-trip loader makes them: tags resolved by YAML 1.2 rules (remembered per text),
    strings as they are, other values (numbers, booleans, null, block scalars) by ruamel's own constructor."""

    resolver: VersionedResolver = field(default_factory=VersionedResolver)
    tags: dict[tuple[str, tuple[bool, bool]], str] = field(default_factory=dict)
    constructor: Any = None

    def value(self, event: Any) -> Any:
        implicit = (bool(event.implicit[0]), bool(event.implicit[1]))
        tag = self.tags.get((event.value, implicit))
        if tag is None:
            tag = self.tags[(event.value, implicit)] = self.resolver.resolve(ScalarNode, event.value, implicit)
        style = event.style or None
        if tag == _STR and style not in ("|", ">"):
            return event.value
        if tag == _MERGE:
            raise _NeedsRoundTrip
        if self.constructor is None:
            self.constructor = YAML(typ="rt").constructor
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=style)
        return self.constructor.construct_document(node)


def _fast_load(text: str) -> Any:
    """The document read from libyaml's events into the values and positions the round-trip loader gives;
    ``_ROUND_TRIP`` for anything that loader must judge (see the module's docstring)."""
    if _LIBYAML is None or _ROUND_TRIP_ONLY.search(text):
        return _ROUND_TRIP
    scalars = _Scalars()
    stack: list[_Open] = []
    root: Any = None
    documents = 0
    try:
        for event in pyyaml.parse(text, Loader=_LIBYAML):
            if isinstance(event, pyyaml.ScalarEvent):
                if event.anchor is not None or event.tag is not None:
                    return _ROUND_TRIP
                value = scalars.value(event)
            elif isinstance(event, pyyaml.CollectionStartEvent):
                if event.anchor is not None or event.tag is not None or len(stack) > MAX_DEPTH:
                    return _ROUND_TRIP
                opened = CommentedMap() if isinstance(event, pyyaml.MappingStartEvent) else CommentedSeq()
                opened._yaml_set_line_col(event.start_mark.line, event.start_mark.column)
                stack.append(_Open(opened))
                continue
            elif isinstance(event, pyyaml.CollectionEndEvent):
                value = stack.pop().container
            elif isinstance(event, pyyaml.DocumentStartEvent):
                documents += 1
                if documents > 1 or event.version is not None or event.tags:
                    return _ROUND_TRIP
                continue
            elif isinstance(event, pyyaml.AliasEvent):
                return _ROUND_TRIP
            else:
                continue
            mark = _start_mark(event, value)
            if not stack:
                root = value
            elif not _place(stack[-1], value, mark):
                return _ROUND_TRIP
    except (pyyaml.YAMLError, _NeedsRoundTrip):
        return _ROUND_TRIP
    return root


def _start_mark(event: Any, value: Any) -> tuple[int, int]:
    if isinstance(value, (CommentedMap, CommentedSeq)):
        return value.lc.line, value.lc.col
    return event.start_mark.line, event.start_mark.column


def _place(top: _Open, value: Any, mark: tuple[int, int]) -> bool:
    """Put a value read into the container being read, recording its position as the round-trip loader does;
    False for what only that loader judges (a key that is no plain value, a repeated key, a merge key)."""
    container = top.container
    if isinstance(container, CommentedSeq):
        container._yaml_set_idx_line_col(len(container), list(mark))
        container.append(value)
        return True
    if top.key is _NO_KEY:
        if isinstance(value, (CommentedMap, CommentedSeq)) or value in container or value == "<<":
            return False
        top.key, top.key_mark = value, mark
        return True
    container[top.key] = value
    container._yaml_set_kv_line_col(top.key, [*top.key_mark, *mark])
    top.key = _NO_KEY
    return True


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
