"""Single mutations of real Falco rules, for the differential test of the rules validator against Falco.

Each mutation changes one thing in one item of a rule set (a token of a condition deleted or doubled, a field,
macro or list name changed, an operator swapped, a quote broken, a priority or key changed, an item moved) and
keeps everything else. The rule set is written as JSON, which YAML reads, so writing 200 variants is cheap.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

Item = dict[str, Any]
TOKEN = re.compile(r"""\s+|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|[(),]|!=|<=|>=|==|[=<>]|[^\s(),=<>!"']+""")
FIELD = re.compile(r"^[a-zA-Z]+[a-zA-Z0-9_]*(\.[a-zA-Z]+[a-zA-Z0-9_]*)+")
OPERATORS = ["=", "!=", "<", ">=", "contains", "icontains", "startswith", "endswith", "in", "pmatch", "exists",
             "glob", "intersects", "regex", "bcontains", "==", "notanop"]  # fmt: skip


@dataclass(frozen=True)
class Mutation:
    name: str
    """What was changed, for the failure message: kind, item, detail."""
    items: list[Item]

    def document(self) -> bytes:
        return json.dumps(self.items, indent=0).encode()


def _conditioned(items: list[Item]) -> list[int]:
    return [index for index, item in enumerate(items) if isinstance(item.get("condition"), str)]


def _label(item: Item) -> str:
    for kind in ("rule", "macro", "list"):
        if kind in item:
            return f"{kind} {item[kind]}"
    return "item"


def mutations(items: list[Item], count: int, seed: int = 7) -> Iterator[Mutation]:
    """``count`` single mutations of ``items`` (each a full copy of the rule set with one change)."""
    chooser = random.Random(seed)
    kinds = [_delete_token, _double_token, _rename_field, _rename_macro, _rename_list, _swap_operator,
             _break_quote, _move_definition_last, _change_priority, _drop_key, _append_to_missing,
             _unbalance]  # fmt: skip
    produced = 0
    attempts = 0
    while produced < count and attempts < count * 20:
        attempts += 1
        kind = kinds[attempts % len(kinds)]
        mutated = copy.deepcopy(items)
        detail = kind(mutated, chooser)
        if detail is None:
            continue
        produced += 1
        yield Mutation(f"{kind.__name__.strip('_')}: {detail}", mutated)


def _tokens(condition: str) -> list[str]:
    return TOKEN.findall(condition)


def _pick_condition(items: list[Item], chooser: random.Random) -> tuple[Item, list[str]]:
    item = items[chooser.choice(_conditioned(items))]
    return item, _tokens(item["condition"])


def _delete_token(items: list[Item], chooser: random.Random) -> str | None:
    item, tokens = _pick_condition(items, chooser)
    solid = [index for index, token in enumerate(tokens) if token.strip()]
    if len(solid) < 2:
        return None
    index = chooser.choice(solid)
    removed = tokens.pop(index)
    item["condition"] = "".join(tokens)
    return f"{_label(item)}: deleted {removed!r}"


def _double_token(items: list[Item], chooser: random.Random) -> str | None:
    item, tokens = _pick_condition(items, chooser)
    solid = [index for index, token in enumerate(tokens) if token.strip()]
    index = chooser.choice(solid)
    tokens.insert(index, tokens[index] + " ")
    item["condition"] = "".join(tokens)
    return f"{_label(item)}: doubled {tokens[index + 1]!r}"


def _rename_field(items: list[Item], chooser: random.Random) -> str | None:
    item, tokens = _pick_condition(items, chooser)
    fields = [index for index, token in enumerate(tokens) if FIELD.match(token)]
    if not fields:
        return None
    index = chooser.choice(fields)
    match = FIELD.match(tokens[index])
    assert match is not None
    old = tokens[index]
    tokens[index] = match.group(0) + chooser.choice(["x", "_nope", "s"]) + old[match.end() :]
    item["condition"] = "".join(tokens)
    return f"{_label(item)}: field {old!r} -> {tokens[index]!r}"


def _macro_names(items: list[Item]) -> set[str]:
    return {str(item["macro"]) for item in items if "macro" in item}


def _list_names(items: list[Item]) -> set[str]:
    return {str(item["list"]) for item in items if "list" in item}


def _rename_macro(items: list[Item], chooser: random.Random) -> str | None:
    return _rename_reference(items, chooser, _macro_names(items), "macro")


def _rename_list(items: list[Item], chooser: random.Random) -> str | None:
    return _rename_reference(items, chooser, _list_names(items), "list")


def _rename_reference(items: list[Item], chooser: random.Random, names: set[str], what: str) -> str | None:
    item, tokens = _pick_condition(items, chooser)
    uses = [index for index, token in enumerate(tokens) if token in names]
    if not uses:
        return None
    index = chooser.choice(uses)
    old = tokens[index]
    tokens[index] = old + "_undefined"
    item["condition"] = "".join(tokens)
    return f"{_label(item)}: {what} {old!r} renamed"


def _swap_operator(items: list[Item], chooser: random.Random) -> str | None:
    item, tokens = _pick_condition(items, chooser)
    operators = [index for index, token in enumerate(tokens) if token in OPERATORS]
    if not operators:
        return None
    index = chooser.choice(operators)
    old = tokens[index]
    new = chooser.choice([operator for operator in OPERATORS if operator != old])
    tokens[index] = new
    item["condition"] = "".join(tokens)
    return f"{_label(item)}: operator {old!r} -> {new!r}"


def _break_quote(items: list[Item], chooser: random.Random) -> str | None:
    item, tokens = _pick_condition(items, chooser)
    quoted = [index for index, token in enumerate(tokens) if token[:1] in "\"'"]
    if not quoted:
        return None
    index = chooser.choice(quoted)
    old = tokens[index]
    tokens[index] = old[:-1]
    item["condition"] = "".join(tokens)
    return f"{_label(item)}: quote of {old!r} broken"


def _unbalance(items: list[Item], chooser: random.Random) -> str | None:
    item, tokens = _pick_condition(items, chooser)
    parens = [index for index, token in enumerate(tokens) if token in "()"]
    if not parens:
        return None
    index = chooser.choice(parens)
    tokens.pop(index)
    item["condition"] = "".join(tokens)
    return f"{_label(item)}: a parenthesis removed"


def _move_definition_last(items: list[Item], chooser: random.Random) -> str | None:
    definitions = [index for index, item in enumerate(items) if "macro" in item or "list" in item]
    index = chooser.choice(definitions)
    item = items.pop(index)
    items.append(item)
    return f"{_label(item)} moved to the end"


def _change_priority(items: list[Item], chooser: random.Random) -> str | None:
    rules = [item for item in items if "rule" in item and "priority" in item]
    item = chooser.choice(rules)
    new = chooser.choice(["LOUD", "warning", "Critical", "INFO", "informational", "", "DEBUG2"])
    item["priority"] = new
    return f"{_label(item)}: priority {new!r}"


def _drop_key(items: list[Item], chooser: random.Random) -> str | None:
    item = chooser.choice([item for item in items if "rule" in item or "macro" in item or "list" in item])
    keys = [key for key in item if key not in ("rule", "macro", "list")]
    if not keys:
        return None
    key = chooser.choice(keys)
    del item[key]
    return f"{_label(item)}: {key} removed"


def _append_to_missing(items: list[Item], chooser: random.Random) -> str | None:
    kind = chooser.choice(["rule", "macro", "list"])
    existing = [item for item in items if kind in item]
    if not existing:
        return None
    target = chooser.choice(existing)
    name = target[kind] + chooser.choice(["", "_missing"])
    if kind == "list":
        addition: Item = {"list": name, "items": ["extra"], "override": {"items": "append"}}
    elif kind == "macro":
        addition = {"macro": name, "condition": "or proc.name = extra", "append": True}
    else:
        addition = {"rule": name, "condition": "and proc.name = extra", "override": {"condition": "append"}}
    position = chooser.choice([0, len(items)])
    items.insert(position, addition)
    where = "first" if position == 0 else "last"
    return f"append to {kind} {name!r} placed {where}"
