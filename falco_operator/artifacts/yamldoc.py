"""YAML from users: parsed safely, with caps on size, depth and node count, and line numbers kept for messages.

Two readers give the same values with the same line numbers: libyaml (C, through PyYAML's event parser) reads a
document in a few milliseconds into plain values (``YamlMap`` and ``YamlSeq`` remember where they and their keys
start), resolving plain scalars by the YAML 1.2 core rules; ruamel's round-trip loader, about six to nine times
slower and imported only when first needed, reads whatever the first one leaves to it: a document libyaml refuses
(so every message about invalid YAML is ruamel's), several documents, directives, tags, anchors and aliases,
complex or duplicate keys, merge keys, nesting deeper than the limit, and any plain scalar that could be a number
or a date in a form the fast reader does not build itself (hex, octal, exponents, underscores, timestamps...).
Keeping ruamel off the common path keeps it out of the artifact agent's memory (about 1.5 MiB).
"""

from __future__ import annotations

import io
import re
from functools import cache
from typing import TYPE_CHECKING, Any

import yaml as pyyaml

from ..records import record
from .messages import capped

if TYPE_CHECKING:
    from ruamel.yaml.composer import Composer

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
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    parser = YAML(typ="rt")
    parser.Composer = _no_alias_composer()
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
    except (ArithmeticError, LookupError, TypeError, ValueError) as error:
        # ruamel's constructors fail this way on some plain scalars (``+_`` raises IndexError): still a refusal.
        raise YamlProblem(Problem(f"invalid YAML: a value cannot be read ({type(error).__name__}: {error})")) from None
    return value


_ROUND_TRIP: Any = object()
"""``_fast_load``'s answer when only the round-trip loader can judge the document."""
_LIBYAML = getattr(pyyaml, "CSafeLoader", None)
_NO_KEY: Any = object()
_ROUND_TRIP_ONLY = re.compile(r"[\t\ufeff]|(?:^|[\s\[{,])\?(?=\s|$)|[|>][-+0-9]*#", re.MULTILINE)
"""What the two readers take differently: a tab inside a plain value or a byte order mark inside the text (ruamel
refuses them, libyaml does not), explicit keys (``? key``), a comment glued to a block scalar's header (``>#``)."""


class YamlMap(dict[Any, Any]):
    """A mapping as the fast reader reads it: where it starts and where each of its keys is (0-based line and
    column). The round-trip loader's mappings keep the same facts in their own way; ``line_of`` reads both."""

    __slots__ = ("column", "keys_at", "line")

    def __init__(self, line: int, column: int) -> None:
        super().__init__()
        self.line, self.column = line, column
        self.keys_at: dict[Any, tuple[int, int]] = {}


class YamlSeq(list[Any]):
    """A sequence as the fast reader reads it, with where it starts (0-based line and column)."""

    __slots__ = ("column", "line")

    def __init__(self, line: int, column: int) -> None:
        super().__init__()
        self.line, self.column = line, column


class _NeedsRoundTrip(Exception):
    pass


@record
class _Open:
    """A mapping or sequence being read, with the key read and not yet given a value."""

    container: YamlMap | YamlSeq
    key: Any = _NO_KEY
    key_mark: tuple[int, int] = (0, 0)


_WORDS: dict[str, Any] = {
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys(("null", "Null", "NULL", "~", ""), None),
}
"""The YAML 1.2 core schema's booleans and nulls (``yes``, ``on`` and the like are strings in 1.2)."""
_INTEGER = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\.[0-9]+")
_NUMERIC_START = frozenset("-+.0123456789")
_NUMERIC_LETTERS = frozenset("0123456789abcdefABCDEFxXoO_.+-:eEiInNfFaAtTzZ \t")
"""Every character of every number or timestamp form the YAML 1.2 and 1.1 resolvers know (hex and octal digits
and prefixes, exponents, ``.inf``/``.nan``, underscores, sexagesimal colons, dates and times): a plain scalar that
starts like a number and has any other character, or more than one dot (a version, an address), is text to both."""


def _plain_scalar(text: str) -> Any:
    """A plain (unquoted) scalar's value as the round-trip loader resolves it, for the common forms: booleans,
    nulls, decimal integers and fractions, text. Any other number-like form raises ``_NeedsRoundTrip``."""
    if text in _WORDS:
        return _WORDS[text]
    if text[0] in _NUMERIC_START:
        if _INTEGER.fullmatch(text):
            return int(text)
        if _DECIMAL.fullmatch(text):
            return float(text)
        if text.count(".") < 2 and all(character in _NUMERIC_LETTERS for character in text):
            raise _NeedsRoundTrip
        return text
    if text in ("<<", "="):  # the merge key and the value indicator: tagged by the round-trip loader
        raise _NeedsRoundTrip
    return text


def _scalar(event: Any) -> Any:
    if not event.style:  # libyaml's plain style is ""
        return _plain_scalar(event.value)
    return event.value  # quoted, literal or folded: text as libyaml has already unfolded it


def _fast_load(text: str) -> Any:
    """The document read from libyaml's events into the values and positions the round-trip loader gives;
    ``_ROUND_TRIP`` for anything that loader must judge (see the module's docstring)."""
    if _LIBYAML is None or _ROUND_TRIP_ONLY.search(text):
        return _ROUND_TRIP
    stack: list[_Open] = []
    root: Any = None
    documents = 0
    try:
        for event in pyyaml.parse(text, Loader=_LIBYAML):
            if isinstance(event, pyyaml.ScalarEvent):
                if event.anchor is not None or event.tag is not None:
                    return _ROUND_TRIP
                value = _scalar(event)
                mark = (event.start_mark.line, event.start_mark.column)
            elif isinstance(event, pyyaml.CollectionStartEvent):
                if event.anchor is not None or event.tag is not None or len(stack) > MAX_DEPTH:
                    return _ROUND_TRIP
                at = event.start_mark
                mapping = isinstance(event, pyyaml.MappingStartEvent)
                stack.append(_Open(YamlMap(at.line, at.column) if mapping else YamlSeq(at.line, at.column)))
                continue
            elif isinstance(event, pyyaml.CollectionEndEvent):
                value = stack.pop().container
                mark = (value.line, value.column)
            elif isinstance(event, pyyaml.DocumentStartEvent):
                documents += 1
                if documents > 1 or event.version is not None or event.tags:
                    return _ROUND_TRIP
                continue
            elif isinstance(event, pyyaml.AliasEvent):
                return _ROUND_TRIP
            else:
                continue
            if not stack:
                root = value
            elif not _place(stack[-1], value, mark):
                return _ROUND_TRIP
    except (pyyaml.YAMLError, _NeedsRoundTrip):
        return _ROUND_TRIP
    return root


def _place(top: _Open, value: Any, mark: tuple[int, int]) -> bool:
    """Put a value read into the container being read, recording where a key is; False for what only the
    round-trip loader judges (a key that is no plain value, a repeated key)."""
    container = top.container
    if isinstance(container, YamlSeq):
        container.append(value)
        return True
    if top.key is _NO_KEY:
        if isinstance(value, (YamlMap, YamlSeq)) or value in container or value == "<<":
            return False
        top.key, top.key_mark = value, mark
        return True
    container[top.key] = value
    container.keys_at[top.key] = top.key_mark
    top.key = _NO_KEY
    return True


@cache
def _no_alias_composer() -> type[Composer]:
    from ruamel.yaml.composer import Composer, ComposerError
    from ruamel.yaml.events import AliasEvent

    class NoAliasComposer(Composer):
        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.parser.peek_event()
            if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
                raise ComposerError(None, None, NO_ALIASES, event.start_mark)
            return super().compose_node(parent, index)

    return NoAliasComposer


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
    if isinstance(value, YamlMap) and key is not None:
        at = value.keys_at.get(key)
        return at[0] + 1 if at else None
    if isinstance(value, (YamlMap, YamlSeq)):
        return value.line + 1
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
    """Stable block-style YAML with sorted keys, so every agent writes identical bytes for the same value.

    The bytes are those of ruamel's safe writer. Values made only of text that both YAML 1.1 and 1.2 read as text,
    booleans, nulls, integers and plain fractions are written by PyYAML's writer, which gives the same bytes for
    them (``tests/unit/test_yaml_dump.py`` checks it) without bringing ruamel into the agent's memory."""
    ordered = _sorted(plain(value))
    if isinstance(ordered, (dict, list)) and _written_alike(ordered):
        text: str = pyyaml.dump(ordered, Dumper=_RuamelStyleDumper, default_flow_style=False, width=_WIDTH,
                           allow_unicode=True, sort_keys=False)  # fmt: skip
        return text.encode()
    from ruamel.yaml import YAML

    writer = YAML(typ="safe", pure=True)
    writer.default_flow_style = False
    writer.width = _WIDTH
    buffer = io.StringIO()
    writer.dump(ordered, buffer)
    return buffer.getvalue().encode()


_WIDTH = 4096


class _RuamelStyleDumper(pyyaml.SafeDumper):  # type: ignore[misc]
    """PyYAML's safe writer, quoting as ruamel's does: text that cannot be written plain and holds a single quote
    or a line break gets double quotes (PyYAML would choose single quotes)."""

    def choose_scalar_style(self) -> str:
        style: str = super().choose_scalar_style()
        value = self.event.value
        quoted_apart = "'" in value or "\n" in value
        if style == "'" and not self.event.style and quoted_apart and self.analysis.allow_double_quoted:
            return '"'
        return style


_YAML_1_1_WORDS = frozenset(
    variant for word in ("yes", "no", "on", "off", "y", "n") for variant in (word, word.capitalize(), word.upper())
)
_PLAIN_FRACTION = re.compile(r"-?[0-9]+\.[0-9]+")


def _written_alike(value: Any) -> bool:
    """Whether PyYAML's and ruamel's safe writers give the same bytes for ``value`` (see ``dump_yaml``)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if not all(isinstance(key, str) and _text_to_both(key) for key in item):
                return False
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if not _text_to_both(item):
                return False
        elif isinstance(item, float):
            if not _PLAIN_FRACTION.fullmatch(repr(item)):
                return False
        elif item is not None and not isinstance(item, int):  # bool is an int
            return False
    return True


def _text_to_both(text: str) -> bool:
    """Whether YAML 1.2 (ruamel) and YAML 1.1 (PyYAML) both read ``text``, unquoted, as this text: then the two
    writers quote it, or not, alike."""
    if text in _YAML_1_1_WORDS:
        return False
    try:
        return _plain_scalar(text) is text
    except _NeedsRoundTrip:
        return False


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value
