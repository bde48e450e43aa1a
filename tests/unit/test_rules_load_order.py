"""The rule-set check compiles after each file, as Falco does (issue 23, case 9): a rule may use a macro defined later
in its own file, not one only a later file defines, and a later definition does not hide an item that fails when
its file loads. Each two-file verdict here is Falco 0.44.1's (tests/integration/test_rules_agreement.py runs them).
The check compiles again only what each file changes: the same first error as compiling every prefix in full, at
the cost of one compile."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from falco_operator.artifacts import parse_rules
from falco_operator.artifacts.rules import Finding, RulesFile, check_rule_set
from tests.load_order_cases import LATER_CHANGES, REFUSED_AT_THE_FIRST_FILE, macro, rule, rules_list

RULES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "falco-rules"
LATER_FILE_NOTE = " (chunk"
"""Where the note on a later file's definition starts (the files of the generated cases are chunkN.yaml)."""


def check(*files: tuple[str, str]) -> list[Finding]:
    return check_rule_set([RulesFile(name, parse_rules(text.encode()), text) for name, text in files])


def errors(*files: tuple[str, str]) -> list[str]:
    return [str(finding) for finding in check(*files) if finding.severity == "error"]


def test_what_a_file_uses_must_be_defined_by_then_not_by_a_later_file() -> None:
    for what, (first, second, expected) in REFUSED_AT_THE_FIRST_FILE.items():
        found = errors(("a.yaml", first), ("b.yaml", second))
        assert len(found) == 1, f"{what}: {found}"
        assert found[0].startswith(expected), f"{what}: {found[0]}"
        if "override" not in second:
            assert errors(("b.yaml", second), ("a.yaml", first)) == [], f"{what}: in the other order Falco loads both"


def test_a_macro_defined_later_in_the_same_file_may_be_used_by_a_rule() -> None:
    assert errors(("a.yaml", rule("r", "evt.num > 0 and m") + macro("m", "evt.num > 1"))) == []
    assert errors(("a.yaml", rule("r", "evt.num > 0")), ("b.yaml", rule("s", "m") + macro("m", "evt.num > 1"))) == []


def test_a_later_change_reaches_what_was_compiled_before_it() -> None:
    for what, (first, second, expected) in LATER_CHANGES.items():
        assert errors(("a.yaml", first)) == [], what
        found = errors(("a.yaml", first), ("b.yaml", second))
        if expected is None:
            assert found == [], f"{what}: {found}"
        else:
            assert len(found) == 1, f"{what}: {found}"
            assert found[0].endswith(expected), f"{what}: {found}"


def test_a_rule_compiled_again_warns_once() -> None:
    first = macro("m", "evt.num > 0") + rule("r", "m and evt.dir = <")
    later = macro("m", "and evt.num < 9", override="append")
    found = [finding.message for finding in check(("a.yaml", first), ("b.yaml", later))]
    assert len(found) == 1, found
    assert found[0].startswith("rule 'r': field evt.dir is deprecated: Falco accepts it with a warning")


def test_many_files_cost_about_what_one_file_of_the_same_items_costs() -> None:
    count = 300
    files = [("0.yaml", macro("base", "evt.num > 0") + rules_list("l0", "open"))]
    files += [(f"{i}.yaml", rules_list(f"l{i}", f"l{i - 1}, x{i}") + macro(f"m{i}", f"base and proc.name in (l{i})")
               + rule(f"r{i}", f"m{i} and evt.type in (open)")) for i in range(1, count)]  # fmt: skip
    one_file = [("all.yaml", "".join(text for _, text in files))]
    assert errors(*files) == []
    assert errors(*one_file) == []
    times = {}
    for label, given in (("files", files), ("one", one_file)):
        loaded = [RulesFile(name, parse_rules(text.encode()), text) for name, text in given]
        best = float("inf")
        for _ in range(3):
            started = time.thread_time()
            check_rule_set(loaded)
            best = min(best, time.thread_time() - started)
        times[label] = best
    # Compiling every prefix in full would take hundreds of times one compile.
    assert times["files"] < 3 * times["one"], times


# -- the incremental compile against compiling every prefix in full -------------------------------------------


def full_prefix_verdict(files: Sequence[RulesFile]) -> str | None:
    """The first error of the first prefix that fails, each compiled in full (one file of all its items compiles
    the same items as the prefix, once): what Falco says, by definition."""
    for end in range(1, len(files) + 1):
        merged = RulesFile("prefix.yaml", [item for rules_file in files[:end] for item in rules_file.items])
        found = [f.message for f in check_rule_set([merged]) if f.severity == "error"]
        if found:
            return found[0]
    return None


def incremental_verdict(files: Sequence[RulesFile]) -> str | None:
    found = [f.message for f in check_rule_set(files) if f.severity == "error"]
    return found[0].split(LATER_FILE_NOTE)[0] if found else None


def chunked(items: list[Any], chooser: random.Random) -> list[list[Any]]:
    cuts = sorted(chooser.sample(range(1, len(items)), chooser.randint(1, 4)))
    return [items[start:end] for start, end in zip([0, *cuts], [*cuts, len(items)], strict=True)]


def a_change(items: list[Any], chooser: random.Random) -> tuple[str, list[Any]]:
    """A later file that appends to or overrides a macro or list of ``items`` with another one's content, and the
    name it changes."""
    macros = [item for item in items if "macro" in item]
    lists = [item for item in items if "list" in item]
    if chooser.random() < 0.5:
        target, source = chooser.choice(macros), chooser.choice(macros)
        mode = chooser.choice(["append", "replace"])
        condition = ("and " if mode == "append" else "") + str(source["condition"])
        return target["macro"], [{"macro": target["macro"], "condition": condition, "override": {"condition": mode}}]
    target, source = chooser.choice(lists), chooser.choice(lists)
    extra = [*source["items"], chooser.choice(["nope_type", "open", target["list"], source["list"]])]
    mode = chooser.choice(["append", "replace"])
    return target["list"], [{"list": target["list"], "items": extra, "override": {"items": mode}}]


def test_the_incremental_compile_finds_what_compiling_every_prefix_finds() -> None:
    items = parse_rules((RULES / "falco_rules.yaml").read_bytes())[:160]
    chooser = random.Random(23)
    failing = 0
    for case in range(24):
        chunks = chunked(list(items), chooser)
        if case % 3 == 0:
            chooser.shuffle(chunks)  # uses before definitions
        for _ in range(chooser.randint(1, 3)):  # each after the file that defines what it changes
            name, change = a_change(items, chooser)
            defined = next(index for index, chunk in enumerate(chunks)
                           if any(name in (item.get("macro"), item.get("list")) for item in chunk))  # fmt: skip
            chunks.insert(chooser.randint(defined + 1, len(chunks)), change)
        files = [RulesFile(f"chunk{index}.yaml", chunk) for index, chunk in enumerate(chunks)]
        expected = full_prefix_verdict(files)
        assert incremental_verdict(files) == expected, f"case {case}: {[len(chunk) for chunk in chunks]}"
        failing += expected is not None
    assert 6 <= failing <= 18, f"the cases must both pass and fail: {failing} of 24 failed"
