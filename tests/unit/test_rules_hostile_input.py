"""Hostile rules are judged quickly, with the same verdict as before: long words after ``%`` in outputs, long
words in conditions, macros reused in chains. The time bounds are generous regression guards (these inputs took
seconds to hours before), not benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from falco_operator.artifacts import Invalid, parse_config, parse_rules
from falco_operator.artifacts.messages import MAX_MESSAGE, MAX_QUOTED, capped
from falco_operator.artifacts.rules import Finding, RulesFile, check_rule_set, parse_condition, standalone_problem
from falco_operator.artifacts.rules.condition import ConditionError, MacroRef
from falco_operator.artifacts.rules.ruleset import _substitute_lists
from falco_operator.artifacts.yamldoc import Problem

BOUND_SECONDS = 1.0
PUBLISHED_RULES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "falco-rules"


def timed(judge: Callable[[], Any]) -> tuple[Any, float]:
    """CPU seconds of this thread, not wall time: on a machine busy with other work a wall clock measures the
    neighbours (a run beside six test sessions took 1.6 s of wall time for 0.3 s of work)."""
    started = time.thread_time()
    result = judge()
    return result, time.thread_time() - started


def rule(condition: str = "evt.type = open", output: str = "opened %fd.name") -> dict[str, Any]:
    return {"rule": "r", "desc": "d", "condition": condition, "output": output, "priority": "WARNING"}


def errors(items: list[Any], *, standalone: bool = True) -> list[Finding]:
    findings = check_rule_set([RulesFile("hostile.yaml", items)], standalone=standalone)
    return [finding for finding in findings if finding.severity == "error"]


@pytest.mark.parametrize("letters", [1_200, 4_000, 100_000])
def test_output_with_a_long_word_after_percent_is_refused_quickly(letters: int) -> None:
    found, seconds = timed(lambda: errors([rule(output="%" + "a" * letters)]))
    assert seconds < BOUND_SECONDS, f"{seconds:.2f} s for {letters} letters"
    assert [finding.message for finding in found] == [
        f"rule 'r' output: %{capped('a' * letters, 128)} is not a known field"
    ]


@pytest.mark.parametrize(
    ("output", "verdict"),
    [
        ("%proc." + "a" * 100_000, "is not a known field"),
        ("%evt.arg." + "a" * 100_000, "is not a known field"),
        ("%proc." + "a." * 50_000 + "b", "is not a known field"),
        ("%" + "a." * 50_000 + "b", None),  # a field class not catalogued: a warning, as for any plugin's field
        ("%proc.name" + "x" * 100_000, None),  # read as %proc.name followed by text, as Falco reads it
        ("%evt.arg.flags" + "." + "x" * 100_000, None),  # evt.arg takes any dotted argument: a known field
        ("%tolower(" + "a" * 50_000 + ")" * 50_000, "is not a known field"),
        ("%proc.aname[" + "1" * 100_000, None),  # an unclosed argument: %proc.aname, then text
    ],
)
def test_output_with_a_long_field_like_token_keeps_its_verdict_and_is_quick(output: str, verdict: str | None) -> None:
    found, seconds = timed(lambda: errors([rule(output=output)]))
    assert seconds < BOUND_SECONDS, f"{seconds:.2f} s for {output[:30]}..."
    if verdict is None:
        assert found == []
    else:
        assert len(found) == 1
        assert verdict in found[0].message


def test_output_tokens_are_read_as_the_longest_known_prefix() -> None:
    accepted = ["%proc.namex", "%proc.name.x", "%evt.arg.flags", "%proc.aname[2]x", "%tolower(proc.name)[",
                "%12proc.name", "%container.image.repositoryx", "%proc.aname[x]"]  # fmt: skip
    refused = ["%proc.", "%proc.nam", "%evt.arg.nope", "%tolower(proc.namex)", "%a"]
    for output in accepted:
        assert errors([rule(output=output)]) == [], output
    for output in refused:
        assert errors([rule(output=output)]), output


@pytest.mark.parametrize("letters", [20_000, 100_000])
def test_condition_of_one_long_word_is_parsed_quickly(letters: int) -> None:
    tree, seconds = timed(lambda: parse_condition("a" * letters))
    assert seconds < BOUND_SECONDS, f"{seconds:.2f} s for {letters} letters"
    assert isinstance(tree, MacroRef)
    found, seconds = timed(lambda: errors([rule(condition="a" * letters)], standalone=False))
    assert seconds < BOUND_SECONDS
    assert "undefined macro" in found[0].message


def test_condition_with_a_long_word_in_a_transformer_is_refused_quickly() -> None:
    found, seconds = timed(lambda: errors([rule(condition="tolower(" + "a" * 100_000 + ") = x")]))
    assert seconds < BOUND_SECONDS
    assert "expected field transformer argument" in found[0].message


def test_macros_used_twice_in_a_long_chain_are_checked_quickly() -> None:
    items: list[Any] = [{"macro": "m0", "condition": "proc.name = a"}]
    items += [{"macro": f"m{i}", "condition": f"m{i - 1} or m{i - 1}"} for i in range(1, 40)]
    found, seconds = timed(lambda: errors([*items, rule(condition="m39")], standalone=False))
    assert seconds < BOUND_SECONDS, f"{seconds:.2f} s"
    assert found == []
    items[0] = {"macro": "m0", "condition": "proc.nam = a"}
    found, seconds = timed(lambda: errors([*items, rule(condition="m39")], standalone=False))
    assert seconds < BOUND_SECONDS
    assert len(found) == 1
    assert "(through macro 'm0'): unknown field proc.nam" in found[0].message


def exception_values_bomb(levels: int) -> str:
    """A rules file whose exception values nest aliases: a few hundred bytes that print as 2**levels rows."""
    head = ("- rule: r\n  desc: d\n  condition: evt.type = open\n  output: o\n  priority: WARNING\n"
            "  exceptions:\n  - name: e\n    fields: [proc.name, proc.pname]\n    comps: [=, =]\n"
            "    values:\n    - &a0 [x, x]\n")  # fmt: skip
    return head + "".join(f"    - &a{i} [*a{i - 1}, *a{i - 1}]\n" for i in range(1, levels))


def test_anchors_and_aliases_are_refused_in_rules_and_config_with_the_line() -> None:
    document = exception_values_bomb(26)
    assert len(document) < 1024
    with pytest.raises(Invalid, match="anchors and aliases") as refused:
        parse_rules(document)
    assert refused.value.problem.line == 11
    with pytest.raises(Invalid, match="anchors and aliases") as refused:
        parse_config("base: &b {a: 1}\nother: *b\n")
    assert refused.value.problem.line == 1


def test_published_rules_have_no_anchors_and_still_load() -> None:
    for path in sorted(PUBLISHED_RULES.glob("*.yaml")):
        assert parse_rules(path.read_bytes()), path.name


def test_every_message_is_capped_and_quotes_user_values_short() -> None:
    long_name = "n" * 100_000
    found = errors([{**rule(condition="proc.nam = x"), "rule": long_name}])
    assert len(found[0].message) <= MAX_MESSAGE
    assert found[0].message.startswith(f"rule '{'n' * (MAX_QUOTED - 1)}…': unknown field proc.nam")
    with pytest.raises(ConditionError) as refused:
        parse_condition("proc.name = " + "x" * 100_000 + " y")
    assert refused.value.message == f"unexpected token after '{'x' * (MAX_QUOTED - 1)}…', expecting 'or', 'and'"
    found = errors([rule(condition="proc." + "a" * 100_000 + " = x")])
    assert len(found[0].message) <= MAX_MESSAGE
    problem = standalone_problem("big.yaml", [{**rule(condition="proc.nam = x"), "rule": long_name}])
    assert problem is not None
    assert len(problem.message) <= MAX_MESSAGE
    assert Problem("x" * 100_000).message == "x" * (MAX_MESSAGE - 1) + "…"


def test_a_list_used_thousands_of_times_in_a_long_condition_is_judged_quickly() -> None:
    # Substituting a list rebuilt the whole condition at every use: 5,000 uses next to a 1 MB word took 4.6 s.
    uses = " or ".join(["proc.name in (shell_binaries)"] * 5_000)
    condition = "fd.name = " + "a" * 1_000_000 + " or " + uses
    items = [{"list": "shell_binaries", "items": ["bash", "sh", "zsh"]}, rule(condition=condition)]
    found, seconds = timed(lambda: errors(items))
    assert seconds < BOUND_SECONDS, f"{seconds:.2f} s"
    assert found == []
    found, seconds = timed(lambda: errors([items[0], rule(condition=condition.replace("proc.name", "proc.nam"))]))
    assert seconds < BOUND_SECONDS, f"{seconds:.2f} s"
    assert [finding.message for finding in found] == ["rule 'r': unknown field proc.nam"]


@pytest.mark.parametrize(
    ("condition", "lists", "substituted"),
    [
        ("proc.name in (shells)", [("shells", ["bash", "sh"])], "proc.name in ( bash, sh )"),
        ("shells", [("shells", ["bash"])], "bash "),
        ("x in (shellsx, xshells, shells)", [("shells", ["sh"])], "x in (shellsx, xshells, sh )"),
        ("x in (empty, a)", [("empty", [])], "x in (   a)"),
        ("x in (a ,  empty)", [("empty", [])], "x in (a   )"),
        ("x in (l,l)", [("l", [])], "x in (  )"),
        ("x in (l,l)", [("l", ["q"])], "x in ( q , q )"),
        ("l,l", [("l", [])], " l"),  # Falco resumes one character late after a substitution at the start
        ("x in (outer)", [("outer", ["inner", "c"]), ("inner", ["a b", "b"])], 'x in ( "a b", b , c )'),
    ],
)
def test_lists_are_substituted_as_falco_substitutes_them(
    condition: str, lists: list[tuple[str, list[str]]], substituted: str
) -> None:
    assert _substitute_lists(condition, lists) == substituted
