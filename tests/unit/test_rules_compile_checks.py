"""What Falco refuses when it compiles a condition that parses: regex patterns RE2 does not compile (in POSIX
syntax, as Falco builds them) and transformers on fields they cannot take. The verdicts and Falco's words were
taken from Falco 0.44.1 (tests/integration/test_condition_compile_falco.py checks them against it)."""

from __future__ import annotations

import pytest

from falco_operator.artifacts import parse_rules
from falco_operator.artifacts.rules import FieldCatalogue, RulesFile, check_rule_set
from falco_operator.artifacts.rules.condition import compile_problem, parse_condition, walk


def problems(condition: str) -> list[str]:
    catalogue = FieldCatalogue.load()
    found = (compile_problem(node, catalogue) for node in walk(parse_condition(condition)))
    return [problem for problem in found if problem is not None]


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("a(b", "missing ): a(b"),
        ("[z-a]", "invalid character class range: z-a"),
        ("(?i)abc", "no argument for repetition operator: ?"),
        ("\\\\d+", "invalid escape sequence: \\d"),
        ("\\\\bx", "invalid escape sequence: \\b"),
        ("a{1001}", "invalid repetition size: {1001}"),
    ],
)
def test_a_regex_falco_cannot_compile_is_refused_with_re2s_reason(pattern: str, reason: str) -> None:
    (problem,) = problems(f'proc.name regex "{pattern}"')
    assert reason in problem
    assert "RE2 in POSIX syntax" in problem


@pytest.mark.parametrize(
    "condition",
    [
        'proc.name regex "^ba.*h$"',
        'proc.name regex "[[:alpha:]]+"',
        'proc.name regex "x**"',
        'fd.name regex "\\\\.ssh/"',
        "proc.name regex bash",
        'proc.name startswith "a(b"',
    ],
)
def test_patterns_falco_compiles_pass(condition: str) -> None:
    assert problems(condition) == []


def test_every_pattern_of_regex_oneof_is_compiled() -> None:
    (problem,) = problems('proc.name regex oneof ("ok", "a(b")')
    assert "'a(b'" in problem


@pytest.mark.parametrize(
    ("condition", "fragment"),
    [
        ("tolower(proc.pid) = 1", "tolower() cannot be applied to proc.pid: its value is of type INT64"),
        ("proc.name = toupper(proc.pid)", "toupper() cannot be applied to proc.pid"),
        ("b64(fd.sip) = x", "b64() cannot be applied to fd.sip: its value is of type IPADDR"),
        ("basename(evt.buffer) = x", "basename() cannot be applied to evt.buffer: its value is of type BYTEBUF"),
        ("len(user.uid) = 0", "len() cannot be applied to user.uid"),
        ("tolower(len(proc.name)) = 3", "tolower() cannot be applied to proc.name: its value is of type UINT64"),
        ("tolower(proc.aname) = bash", "field proc.aname does not support transformers"),
        ("len(fd.cnet) > 1", "field fd.cnet does not support transformers"),
        ("tolower(evt.rawarg.data) = a", "field evt.rawarg.data does not support transformers"),
        ("tolower(evt.type) = open", "evt.type cannot be given to a transformer"),
    ],
)
def test_a_transformer_on_a_field_it_cannot_take_is_refused(condition: str, fragment: str) -> None:
    (problem,) = problems(condition)
    assert fragment in problem


@pytest.mark.parametrize(
    "condition",
    [
        "tolower(proc.cmdline) contains bash",
        "b64(evt.buffer) = x",
        "len(evt.buffer) > 3",
        "len(tolower(proc.name)) = 3",
        "tolower(basename(proc.exepath)) = bash",
        "proc.ppid = val(proc.pid)",
        "tolower(evt.arg.flags) contains o_creat",
        "tolower(nosuch.field) = x",
    ],
)
def test_transformers_on_fields_they_take_pass(condition: str) -> None:
    assert problems(condition) == []


def test_a_rules_file_gets_the_compile_problems_with_the_rule_and_column() -> None:
    text = (
        "- macro: lowered\n  condition: tolower(proc.pid) = 1\n"
        "- rule: r\n  desc: d\n  condition: evt.type = open and lowered\n  output: o\n  priority: WARNING\n"
        '- rule: s\n  desc: d\n  condition: evt.type = open and proc.name regex "a(b"\n  output: o\n'
        "  priority: WARNING\n"
    )
    errors = [
        f for f in check_rule_set([RulesFile("f.yaml", parse_rules(text.encode()), text)]) if f.severity == "error"
    ]
    assert len(errors) == 1
    assert errors[0].message.startswith("rule 'r' (through macro 'lowered'): tolower() cannot be applied to proc.pid")
    assert (errors[0].line, errors[0].col) == (2, 14)
    fixed = text.replace("tolower(proc.pid)", "proc.pid")
    errors = [
        f for f in check_rule_set([RulesFile("f.yaml", parse_rules(fixed.encode()), fixed)]) if f.severity == "error"
    ]
    assert [(e.line, e.message.split(":")[0]) for e in errors] == [(10, "rule 's'")]
