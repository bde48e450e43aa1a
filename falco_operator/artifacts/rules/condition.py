"""Falco's filter language (conditions), parsed into a small tree with positions.

A hand-written recursive-descent parser rather than a grammar library: the language is not context-free at the
token level. Whether ``proc.name`` is a field or ``shell_procs`` a macro, whether ``contains`` is an operator
(it needs a blank after it) or the start of a bare string, whether ``or`` ends an expression (it needs a blank or
``(`` after it) all depend on where the cursor is, and Falco's own parser decides them by trying token patterns
in a fixed order at the current position. Reproducing that order is what makes this parser accept and refuse
exactly what Falco does; a tokenizing LALR grammar cannot, and an Earley grammar would be both ambiguous here
and an order of magnitude slower. The grammar (productions, token patterns, operator lists) is Falco's, as
documented in libsinsp's filter parser; the code is this project's.

Positions are 1-based ``line`` and ``col`` inside the condition text, as Falco reports them.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import field
from functools import cache
from typing import TYPE_CHECKING

from ...records import record
from ..messages import MAX_QUOTED, capped, quoted

if TYPE_CHECKING:
    import re2

    from .fields import FieldCatalogue

MAX_DEPTH = 100

UNARY_OPERATORS = ("exists",)
NUMBER_OPERATORS = ("<=", "<", ">=", ">")
STRING_OPERATORS = ("==", "=", "!=", "glob ", "iglob ", "contains ", "icontains ", "bcontains ", "startswith ",
                    "bstartswith ", "endswith ", "regex ")  # fmt: skip
STRING_OPERATOR_MODIFIERS = ("oneof ", "anyof ", "allof ")
LIST_OPERATORS = ("intersects", "in", "pmatch")
VALUE_TRANSFORMER = "val("
TRANSFORMERS = ("tolower(", "toupper(", "b64(", "basename(", "len(", "join(", "concat(", "getopt(")

_BLANKS = " \t\b\r\n"
_SPACE = r"[ \t\n\r\f\v]"
_NOT_BLANK = re.compile(rf"not{_SPACE}+")
# Falco writes these as ``[a-zA-Z]+[a-zA-Z0-9_]*``: the same strings, but two ways to split a run of letters, which
# a backtracking matcher tries one by one (quadratic time on a long word that is no field name). One way only here.
_IDENTIFIER = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*")
_FIELD_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*(?:\.[a-zA-Z][a-zA-Z0-9_]*)+")
_FIELD_ARG_BARE = re.compile(r"""[^\]\["' \t\n\r\f\v]+""")
_HEX_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+")
_NUMBER = re.compile(r"[+\-]?[0-9]+\.?[0-9]*(?:[eE][+\-][0-9]+)?")
_BARE_STRING = re.compile(r"""[^()"' \t\n\r\f\v=,]+""")
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", " ": "\\", "\\": "\\", "/": "/"}
_BOOLEAN_KEYWORD = re.compile(r"(?:and|or|not)(?![a-zA-Z0-9])")


@record(frozen=True)
class Position:
    line: int
    col: int


class ConditionError(Exception):
    def __init__(self, message: str, position: Position) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@record(frozen=True)
class Node:
    position: Position


@record(frozen=True)
class FieldRef(Node):
    name: str
    arg: str | None = None


@record(frozen=True)
class Transformer(Node):
    name: str
    args: tuple[Node, ...]
    arg: str | None = None


@record(frozen=True)
class Value(Node):
    text: str


@record(frozen=True)
class ListValue(Node):
    items: tuple[str, ...]


@record(frozen=True)
class TransformerList(Node):
    items: tuple[Node, ...]


@record(frozen=True)
class MacroRef(Node):
    name: str


@record(frozen=True)
class Check(Node):
    left: Node
    operator: str
    right: Node | None = None


@record(frozen=True)
class BoolOp(Node):
    operator: str  # "and", "or"
    children: tuple[Node, ...]


@record(frozen=True)
class Not(Node):
    child: Node


@record
class _Cursor:
    text: str
    index: int = 0
    line: int = 1
    col: int = 1
    last: str = ""
    depth: int = field(default=0)

    def position(self) -> Position:
        return Position(self.line, self.col)

    def save(self) -> tuple[int, int, int, str]:
        return self.index, self.line, self.col, self.last

    def restore(self, state: tuple[int, int, int, str]) -> None:
        self.index, self.line, self.col, self.last = state

    def advance(self, consumed: str) -> None:
        for char in consumed:
            self.col += 1
            if char in "\r\n":
                self.col = 1
                self.line += 1
        self.index += len(consumed)

    def peek(self) -> str:
        return self.text[self.index] if self.index < len(self.text) else ""


class _ParsedConditions:
    """Trees by condition text, least recently used first out, within a budget of text: an agent checks its whole
    rules set on every change, and all but the changed file's conditions are the same texts as the time before.
    Trees are immutable, so one tree can serve every caller; a text that does not parse is parsed again."""

    MAX_TEXT_CHARS = 2 * 1024 * 1024
    """Characters of condition text kept, all entries together (the trees take a few times that)."""
    MAX_ENTRY_CHARS = 64 * 1024

    def __init__(self) -> None:
        self._trees: OrderedDict[str, Node] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, text: str) -> Node | None:
        with self._lock:
            tree = self._trees.get(text)
            if tree is not None:
                self._trees.move_to_end(text)
            return tree

    def put(self, text: str, tree: Node) -> None:
        if len(text) > self.MAX_ENTRY_CHARS:
            return
        with self._lock:
            if text in self._trees:
                return
            self._trees[text] = tree
            self._chars += len(text)
            while self._chars > self.MAX_TEXT_CHARS:
                evicted, _ = self._trees.popitem(last=False)
                self._chars -= len(evicted)


_PARSED = _ParsedConditions()


def parse_condition(text: str) -> Node:
    """The tree of a condition, or ``ConditionError`` with Falco's message and the position it stopped at."""
    tree = _PARSED.get(text)
    if tree is None:
        tree = _parse_condition(text)
        _PARSED.put(text, tree)
    return tree


def _parse_condition(text: str) -> Node:
    if not text:
        raise ConditionError("filter input string is empty", Position(1, 1))
    parser = _Parser(_Cursor(text))
    tree = parser.parse_or()
    cursor = parser.cursor
    if cursor.index != len(text):
        after = capped(cursor.last, MAX_QUOTED)
        raise ConditionError(f"unexpected token after '{after}', expecting 'or', 'and'", cursor.position())
    return tree


def walk(node: Node) -> list[Node]:
    """Every node of a tree, parents before children."""
    found: list[Node] = [node]
    children: tuple[Node, ...] = ()
    if isinstance(node, BoolOp):
        children = node.children
    elif isinstance(node, Not):
        children = (node.child,)
    elif isinstance(node, Check):
        children = (node.left,) + ((node.right,) if node.right is not None else ())
    elif isinstance(node, Transformer):
        children = node.args
    elif isinstance(node, TransformerList):
        children = node.items
    for child in children:
        found.extend(walk(child))
    return found


class _Parser:
    def __init__(self, cursor: _Cursor) -> None:
        self.cursor = cursor

    # -- errors and depth ---------------------------------------------------------------------------------

    def fail(self, message: str) -> ConditionError:
        return ConditionError(message, self.cursor.position())

    def enter(self) -> None:
        self.cursor.depth += 1
        if self.cursor.depth >= MAX_DEPTH:
            raise self.fail(f"exceeded max depth limit of {MAX_DEPTH}")

    def leave(self) -> None:
        self.cursor.depth -= 1

    # -- lexing -------------------------------------------------------------------------------------------

    def blank(self) -> bool:
        cursor, found = self.cursor, False
        while cursor.peek() and cursor.peek() in _BLANKS:
            cursor.advance(cursor.peek())
            found = True
        return found

    def literal(self, token: str) -> bool:
        cursor = self.cursor
        if cursor.text.startswith(token, cursor.index):
            cursor.last = token
            cursor.advance(token)
            return True
        return False

    def pattern(self, regex: re.Pattern[str]) -> bool:
        cursor = self.cursor
        match = regex.match(cursor.text, cursor.index)
        if match is None or not match.group(0):
            return False
        cursor.last = match.group(0)
        cursor.advance(cursor.last)
        return True

    def one_of(self, tokens: tuple[str, ...]) -> bool:
        return any(self.literal(token) for token in tokens)

    def operator(self, operators: tuple[str, ...]) -> bool:
        """An operator; one written with a trailing blank in the list needs at least one blank after it."""
        for operator in operators:
            if not operator.endswith(" "):
                if self.literal(operator):
                    return True
                continue
            saved = self.cursor.save()
            if self.literal(operator.strip()):
                if self.blank():
                    return True
                self.cursor.restore(saved)
        return False

    def quoted(self) -> bool:
        cursor = self.cursor
        delimiter = cursor.peek()
        if delimiter not in ("'", '"'):
            return False
        previous = "\\"
        index = cursor.index
        while index < len(cursor.text):
            char = cursor.text[index]
            if char == delimiter and previous != "\\":
                raw = cursor.text[cursor.index : index + 1]
                start = cursor.position()
                cursor.advance(raw)
                try:
                    cursor.last = _unescape(raw)
                except ValueError as error:
                    raise ConditionError(str(error), start) from None
                return True
            previous = char
            index += 1
        return False

    # -- productions --------------------------------------------------------------------------------------

    def parse_or(self) -> Node:
        return self._chain("or", self.parse_and)

    def parse_and(self) -> Node:
        return self._chain("and", self.parse_not)

    def _chain(self, keyword: str, operand: object) -> Node:
        assert callable(operand)
        self.enter()
        position = self.cursor.position()
        self.blank()
        children = [operand()]
        self.blank()
        while self.literal(keyword):
            if self.blank():
                children.append(operand())
            elif self.literal("("):
                children.append(self.embedded())
            else:
                raise self.fail(f"expected blank or '(' after '{keyword}'")
            self.blank()
        self.leave()
        return children[0] if len(children) == 1 else BoolOp(position, keyword, tuple(children))

    def parse_not(self) -> Node:
        self.enter()
        position = self.cursor.position()
        negated = False
        self.blank()
        while self.pattern(_NOT_BLANK):
            negated = not negated
        if self.literal("not("):
            negated = not negated
            child = self.embedded()
        else:
            child = self.parse_check()
        self.leave()
        return Not(position, child) if negated else child

    def embedded(self) -> Node:
        self.enter()
        self.blank()
        child = self.parse_or()
        self.blank()
        if not self.literal(")"):
            raise self.fail("expected a ')' token")
        self.leave()
        return child

    def parse_check(self) -> Node:
        self.enter()
        position = self.cursor.position()
        self.blank()
        if self.literal("("):
            result = self.embedded()
        elif self.pattern(_FIELD_NAME):
            result = self.condition(self.field_remainder(self.cursor.last, position), position)
        elif self.one_of(TRANSFORMERS):
            self.blank()
            name = self.cursor.last[:-1]
            result = self.condition(self.transformer_remainder(name, position), position)
        elif self.pattern(_IDENTIFIER):
            result = MacroRef(position, self.cursor.last)
        else:
            raise self.fail("expected a '(' token, a field check, or an identifier")
        self.leave()
        return result

    def field_remainder(self, name: str, position: Position) -> FieldRef:
        return FieldRef(position, name, self.optional_field_arg())

    def optional_field_arg(self) -> str | None:
        if not self.literal("["):
            return None
        if not self.quoted() and not self.pattern(_FIELD_ARG_BARE):
            raise self.fail("expected a valid field argument: a quoted string or a bare string")
        arg = self.cursor.last
        if not self.literal("]"):
            raise self.fail("expected a ']' token")
        return arg

    def transformer_remainder(self, name: str, position: Position, *, with_arg: bool = True) -> Transformer:
        self.enter()
        self.blank()
        args = [self.transformer_arg(self.cursor.position())]
        self.blank()
        while self.literal(","):
            args.append(self.transformer_arg(self.cursor.position()))
            self.blank()
        self.blank()
        if not self.literal(")"):
            raise self.fail("expected a ')' token closing the transformer")
        self.leave()
        return Transformer(position, name, tuple(args), self.optional_field_arg() if with_arg else None)

    def transformer_arg(self, position: Position) -> Node:
        self.enter()
        self.blank()
        result: Node
        if self.pattern(_HEX_NUMBER) or self.pattern(_NUMBER) or self.quoted():
            result = Value(position, self.cursor.last)
        elif self.literal("("):
            result = self.transformer_list(position)
        elif self.one_of(TRANSFORMERS):
            result = self.transformer_remainder(self.cursor.last[:-1], position)
        elif self.pattern(_FIELD_NAME):
            result = self.field_remainder(self.cursor.last, position)
        else:
            raise self.fail("expected field transformer argument: field, transformer, quoted string, number, or "
                            "transformer list")  # fmt: skip
        self.leave()
        return result

    def transformer_list(self, position: Position) -> TransformerList:
        items: list[Node] = []
        self.blank()
        if self.literal(")"):
            return TransformerList(position, ())
        items.append(self.transformer_list_item(position))
        self.blank()
        while self.literal(","):
            self.blank()
            items.append(self.transformer_list_item(position))
            self.blank()
        if not self.literal(")"):
            raise self.fail("expected ')'")
        return TransformerList(position, tuple(items))

    def transformer_list_item(self, position: Position) -> Node:
        if self.pattern(_FIELD_NAME):
            return self.field_remainder(self.cursor.last, position)
        if self.one_of(TRANSFORMERS):
            self.blank()
            return self.transformer_remainder(self.cursor.last[:-1], position)
        if self.quoted() or self.pattern(_HEX_NUMBER) or self.pattern(_NUMBER):
            return Value(position, self.cursor.last)
        raise self.fail("expected transformer list argument: field, transformer, quoted string, or number")

    def condition(self, left: Node, position: Position) -> Check:
        self.blank()
        if self.operator(UNARY_OPERATORS):
            return Check(position, left, self.cursor.last.strip())
        self.blank()
        right: Node
        if self.operator(NUMBER_OPERATORS):
            operator = self.cursor.last
            right = self.number_or_transformer()
        elif self.operator(STRING_OPERATORS):
            operator = self.cursor.last
            had_blank = operator[0].isalpha() or self.blank()
            saved = self.cursor.save()
            if (
                had_blank
                and self.operator(STRING_OPERATOR_MODIFIERS)
                and self.list_follows()
                and not (_BOOLEAN_KEYWORD.match(self.cursor.text, self.cursor.index))
            ):
                operator = f"{operator.strip()} {self.cursor.last.strip()}"
                right = self.list_value()
            else:
                self.cursor.restore(saved)
                right = self.string_or_transformer(no_transformer=False)
        elif self.operator(LIST_OPERATORS):
            operator = self.cursor.last
            right = self.list_or_transformer()
        else:
            operators = ", ".join(f"'{op.strip()}'" for op in (*UNARY_OPERATORS, *NUMBER_OPERATORS,
                                                               *STRING_OPERATORS, *LIST_OPERATORS))  # fmt: skip
            raise self.fail(f"expected a valid check operator: one of {operators}")
        return Check(position, left, operator.strip(), right)

    def list_follows(self) -> bool:
        if self.cursor.peek() == "(":
            return True
        saved = self.cursor.save()
        found = self.pattern(_IDENTIFIER)
        self.cursor.restore(saved)
        return found

    def number_or_transformer(self) -> Node:
        self.blank()
        position = self.cursor.position()
        transformer = self.try_transformer_or_val()
        if transformer is not None:
            return transformer
        if self.pattern(_HEX_NUMBER) or self.pattern(_NUMBER):
            return Value(position, self.cursor.last)
        raise self.fail(f"expected a number value or a field with a valid transformer: {_transformer_names()}")

    def string_or_transformer(self, *, no_transformer: bool) -> Node:
        self.blank()
        position = self.cursor.position()
        if not no_transformer:
            transformer = self.try_transformer_or_val()
            if transformer is not None:
                return transformer
        if self.quoted() or self.pattern(_BARE_STRING):
            return Value(position, self.cursor.last)
        if no_transformer:
            raise self.fail("expected a string value")
        raise self.fail(f"expected a string value or a field with a valid transformer: {_transformer_names()}")

    def try_list(self) -> ListValue | None:
        position = self.cursor.position()
        if not self.literal("("):
            return None
        items: list[str] = []
        self.blank()
        try:
            first = self.string_or_transformer(no_transformer=True)
        except ConditionError:
            first = None
        if isinstance(first, Value):
            items.append(first.text)
            self.blank()
            while self.literal(","):
                item = self.string_or_transformer(no_transformer=True)
                assert isinstance(item, Value)
                items.append(item.text)
                self.blank()
        if not self.literal(")"):
            raise self.fail("expected a ')' token")
        return ListValue(position, tuple(items))

    def list_value(self) -> Node:
        self.blank()
        position = self.cursor.position()
        listed = self.try_list()
        if listed is not None:
            return listed
        if self.pattern(_IDENTIFIER):
            return Value(position, self.cursor.last)
        raise self.fail("expected a list or an identifier")

    def list_or_transformer(self) -> Node:
        self.blank()
        position = self.cursor.position()
        listed = self.try_list()
        if listed is not None:
            return listed
        transformer = self.try_transformer_or_val()
        if transformer is not None:
            return transformer
        if self.pattern(_IDENTIFIER):
            return Value(position, self.cursor.last)
        raise self.fail(f"expected a list, an identifier, or a field with a valid transformer: {_transformer_names()}")

    def try_transformer_or_val(self) -> Node | None:
        self.blank()
        position = self.cursor.position()
        if self.literal(VALUE_TRANSFORMER):
            self.blank()
            field_position = self.cursor.position()
            if not self.pattern(_FIELD_NAME):
                raise self.fail("expected a field within 'val' transformer")
            child = self.field_remainder(self.cursor.last, field_position)
            self.blank()
            if not self.literal(")"):
                raise self.fail("expected a ')' token closing the transformer")
            return Transformer(position, "val", (child,), self.optional_field_arg())
        if self.one_of(TRANSFORMERS):
            self.blank()
            return self.transformer_remainder(self.cursor.last[:-1], position)
        return None


def _transformer_names() -> str:
    return ", ".join(f"'{name[:-1]}'" for name in (VALUE_TRANSFORMER, *TRANSFORMERS))


def _unescape(quoted: str) -> str:
    delimiter, body = quoted[0], quoted[1:-1]
    result: list[str] = []
    escaped = False
    for char in body:
        if not escaped:
            if char == "\\":
                escaped = True
            else:
                result.append(char)
            continue
        escaped = False
        if char in _ESCAPES:
            result.append(_ESCAPES[char])
        elif char in ("'", '"'):
            if char != delimiter:
                other = "'-quoted" if delimiter == "'" else '"-quoted'
                raise ValueError(f"invalid \\{char} escape in {other} string")
            result.append(char)
        else:
            raise ValueError(f"unsupported string escape sequence: \\{char}")
    return "".join(result)


def parse_field_or_transformer(text: str) -> Node:
    """A field or a transformer applied to fields (``proc.name``, ``tolower(fd.name)``), covering ``text``."""
    tree, consumed = parse_field_prefix(text)
    if consumed != len(text):
        raise ConditionError(f"unexpected text after the field: {text[consumed:]!r}", Position(1, consumed + 1))
    return tree


def parse_field_prefix(text: str, start: int = 0, *, with_arg: bool = True) -> tuple[Node, int]:
    """A field or transformer at ``start`` in ``text`` and where it ends (output ``%`` tokens). ``with_arg=False``:
    stop before a bracketed argument of the outermost field or transformer, as if the text ended there."""
    parser = _Parser(_Cursor(text, start, col=start + 1))
    position = parser.cursor.position()
    if parser.pattern(_FIELD_NAME):
        name = parser.cursor.last
        tree: Node = parser.field_remainder(name, position) if with_arg else FieldRef(position, name)
    elif parser.one_of(TRANSFORMERS):
        parser.blank()
        tree = parser.transformer_remainder(parser.cursor.last[:-1], position, with_arg=with_arg)
    else:
        raise parser.fail(f"unexpected token after '{capped(parser.cursor.last, MAX_QUOTED)}")
    return tree, parser.cursor.index


# -- what Falco refuses when it compiles a parsed condition ----------------------------------------------------


def compile_problem(node: Node, catalogue: FieldCatalogue) -> str | None:
    """What Falco refuses in one node of a parsed condition when it compiles it, which the grammar alone allows:
    a ``regex`` pattern RE2 does not compile, a transformer on a field whose type it cannot take, a transformer on
    a field that takes none. None when the node is fine or cannot be judged (a field the catalogue does not
    know)."""
    if isinstance(node, Check):
        return regex_problem(node)
    if isinstance(node, Transformer):
        return transformer_problem(node, catalogue)
    return None


_REGEX_HINT = "Falco compiles it with RE2 in POSIX syntax, which has no \\d, \\w, \\b or (?...) groups"


def regex_problem(check: Check) -> str | None:
    """The first pattern of a ``regex`` check that Falco cannot compile, with RE2's reason."""
    if check.operator.split()[0] != "regex":
        return None
    patterns = check.right.items if isinstance(check.right, ListValue) else ()
    if isinstance(check.right, Value):
        patterns = (check.right.text,)
    for pattern in patterns:
        reason = _re2_error(pattern)
        if reason is not None:
            return f"invalid regular expression {quoted(pattern)}: {reason} ({_REGEX_HINT})"
    return None


@cache
def _re2_options() -> re2.Options:
    import re2  # 2 MiB resident: loaded by the first rules file with a regex condition, not by every agent

    options = re2.Options()
    options.posix_syntax = True  # as libsinsp builds its regex checks: perl classes and (?flags) are refused
    options.log_errors = False
    return options


def _re2_error(pattern: str) -> str | None:
    import re2

    try:
        re2.compile(pattern, _re2_options())
    except re2.error as error:
        reason = error.args[0] if error.args else ""
        text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        return capped(text, MAX_QUOTED)
    return None


_TRANSFORMER_TAKES = {"tolower": ("CHARBUF",), "toupper": ("CHARBUF",), "basename": ("CHARBUF",),
                      "b64": ("CHARBUF", "BYTEBUF"), "len": ("CHARBUF", "BYTEBUF")}  # fmt: skip
"""The field types each transformer takes, as Falco 0.44 (libsinsp 0.25) accepts them; the other transformers
(val, join, concat, getopt) are not judged here."""
_TRANSFORMER_GIVES = {"len": "UINT64"}
"""The type a transformer's value has when it is not the type it was given."""
_NO_TRANSFORMERS_TYPES = ("IPNET", "DYNAMIC")
_NO_TRANSFORMERS_FIELDS = frozenset({"fd.cip.name", "fd.lip.name", "fd.rip.name", "fd.sip.name", "proc.acmdline",
                                     "proc.aenv", "proc.aexe", "proc.aexepath", "proc.aname"})  # fmt: skip
"""String fields libsinsp marks as taking no transformer (Falco says "field 'proc.aname' does not support
transformers"), found by giving every string field of Falco 0.44.1 and the container plugin to ``len()``."""
_EVENT_TYPE_FIELDS = ("evt.type", "syscall.type")
"""Fields Falco's event type search reads: inside a transformer, Falco stops at load ("event code search does not
support `evt.type` checks with transformers")."""
_TYPE_WORDS = {"CHARBUF": "string", "BYTEBUF": "byte buffer"}


def transformer_problem(node: Transformer, catalogue: FieldCatalogue) -> str | None:
    """Why Falco refuses this transformer on its argument (a field of a type it does not take, or a field that
    takes no transformer); None when it takes it or the argument's type is not known."""
    takes = _TRANSFORMER_TAKES.get(node.name)
    if takes is None or len(node.args) != 1:
        return None
    typed = _typed(node.args[0], catalogue)
    if typed is None:
        return None
    value_type, field_name = typed
    if field_name in _EVENT_TYPE_FIELDS:
        return (
            f"{field_name} cannot be given to a transformer such as {node.name}() (Falco stops: its event type "
            f"search does not support {field_name} with transformers); compare {field_name} itself"
        )
    if isinstance(node.args[0], FieldRef) and (
        value_type in _NO_TRANSFORMERS_TYPES or field_name in _NO_TRANSFORMERS_FIELDS
    ):
        return f"field {field_name} does not support transformers such as {node.name}(); compare the field itself"
    if value_type in takes:
        return None
    wanted = " or ".join(f"{_TYPE_WORDS.get(kind, kind)} ({kind})" for kind in takes)
    return (f"{node.name}() cannot be applied to {field_name}: its value is of type {value_type}, and {node.name} "
            f"takes a {wanted} value")  # fmt: skip


def _typed(node: Node, catalogue: FieldCatalogue) -> tuple[str, str] | None:
    """The type of a transformer argument's value and the field it comes from; None when not known or when an
    inner transformer is itself refused (that one is reported on its own)."""
    if isinstance(node, FieldRef):
        info = catalogue.lookup(node.name, node.arg).info
        return (info.type, node.name) if info is not None else None
    if isinstance(node, Transformer) and node.name in _TRANSFORMER_TAKES and len(node.args) == 1:
        inner = _typed(node.args[0], catalogue)
        if inner is None or transformer_problem(node, catalogue) is not None:
            return None
        return _TRANSFORMER_GIVES.get(node.name, inner[0]), inner[1]
    return None
