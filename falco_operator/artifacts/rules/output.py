"""Outputs as Falco reads them: each ``%`` token (after an optional length) is the longest prefix of what follows
that is a known field, or a transformer applied to known fields.

Falco matches field names against the text; it does not re-read the text for every length. Trying every prefix
with the condition parser would take time cubic in the length of a word after ``%``, so the prefixes are judged
in three steps that give the same answer: the token as written (with its bracketed argument), the token without
that argument, then the shorter prefixes of its field name, which the catalogue judges in time bounded by its
longest names (``FieldCatalogue.longest_known_prefix``).
"""

from __future__ import annotations

import re
from typing import Literal

from ..messages import MAX_QUOTED, capped
from .condition import ConditionError, FieldRef, Node, parse_field_prefix, walk
from .fields import FieldCatalogue

Severity = Literal["error", "warning"]
_TOKEN = re.compile(r"[^\s]*")
_NAME = re.compile(r"[A-Za-z0-9_.]*")


def output_problem(output: str, catalogue: FieldCatalogue, source: str | None = None) -> tuple[Severity, str] | None:
    """The first error of an output format (or its first warning), in words; None when every token is a field.
    ``source``: the rule's event source (fields of other sources are not known there)."""
    text = output[1:] if output.startswith("*") else output
    index = 0
    warning: tuple[Severity, str] | None = None
    while True:
        index = text.find("%", index)
        if index < 0:
            return warning
        if index == len(text) - 1:
            return "error", "a % at the end of the output names no field"
        index += 1
        while index < len(text) and text[index].isdigit():
            index += 1
        if index >= len(text):
            return "error", "a % with a length at the end of the output names no field"
        outcome = read_field(text, index, catalogue, source)
        if outcome is None:
            token = _TOKEN.match(text, index)
            shown = capped(token.group(0) if token else "", MAX_QUOTED)
            return "error", f"%{shown} is not a known field" + _why(text, index, catalogue, source)
        consumed, severity, message = outcome
        if severity == "warning" and warning is None:
            warning = ("warning", message)
        index += consumed


def read_field(
    text: str, start: int, catalogue: FieldCatalogue, source: str | None = None
) -> tuple[int, Severity | Literal["ok"], str] | None:
    """The field token at ``start``: (characters it takes, severity, message), or None when no prefix is a field."""
    whole = _parsed(text, start, with_arg=True)
    if whole is not None:
        judged = _judged(*whole, catalogue, source)
        if judged is not None:
            return judged
    bare = _parsed(text, start, with_arg=False)
    if bare is None:
        return None
    if whole is None or whole[1] != bare[1]:
        judged = _judged(*bare, catalogue, source)
        if judged is not None:
            return judged
    tree = bare[0]
    if not isinstance(tree, FieldRef):
        return None  # a transformer cut short leaves a parenthesis open
    found = catalogue.longest_known_prefix(tree.name, len(tree.name), source)
    if found is None:
        return None
    size, lookup = found
    return size, ("warning" if lookup.severity == "warning" else "ok"), lookup.problem or ""


def _parsed(text: str, start: int, *, with_arg: bool) -> tuple[Node, int] | None:
    try:
        tree, end = parse_field_prefix(text, start, with_arg=with_arg)
    except ConditionError:
        return None
    return tree, end - start


def _judged(
    tree: Node, consumed: int, catalogue: FieldCatalogue, source: str | None
) -> tuple[int, Severity | Literal["ok"], str] | None:
    severity: Severity | Literal["ok"] = "ok"
    message = ""
    for node in walk(tree):
        if isinstance(node, FieldRef):
            found = catalogue.lookup(node.name, node.arg, source)
            if found.severity == "error":
                return None
            if found.severity == "warning":
                severity, message = "warning", found.problem or ""
    return consumed, severity, message


def _why(text: str, start: int, catalogue: FieldCatalogue, source: str | None) -> str:
    """What the catalogue says about the field name at ``start`` when it says more than "unknown field" (a plugin
    that is not loaded, a class nothing provides)."""
    match = _NAME.match(text, start)
    name = match.group(0).rstrip(".") if match else ""
    found = catalogue.lookup(name, None, source) if name else None
    if found is None or found.severity != "error" or found.problem == f"unknown field {capped(name, MAX_QUOTED)}":
        return ""
    return f" ({found.problem})"
