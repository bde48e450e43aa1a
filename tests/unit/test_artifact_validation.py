"""Structural validation of rules documents and config fragments (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from falco_operator.artifacts import Invalid, check_rules, load_yaml, parse_config, parse_rules
from falco_operator.artifacts.yamldoc import MAX_DEPTH, YamlProblem

RULES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "falco-rules"

GOOD_RULE = """\
- rule: shell_in_container
  desc: notice shell activity within a container
  condition: container.id != host and proc.name = bash
  output: shell in a container (user=%user.name)
  priority: WARNING
"""


@pytest.mark.parametrize("name", ["falco_rules.yaml", "falco-incubating_rules.yaml", "k8s_audit_rules.yaml",
                                  "aws_cloudtrail_rules.yaml"])  # fmt: skip
def test_published_falco_rules_files_are_valid(name: str) -> None:
    items = parse_rules((RULES / name).read_bytes())
    assert len(items) > 10


@pytest.mark.parametrize(
    ("document", "line", "words"),
    [
        ("- rule: a\n  desc: [unclosed\n", 3, "flow sequence that starts on line 2"),
        ("- rule: a\n  desc: d\n   bad: indent\n", 3, "mapping values are not allowed"),
        ("- rule: a\n  desc: d\n  output: o\n  priority: WARNING\n", 1, "missing condition"),
        ("- rule: a\n  desc: d\n  condition: c\n  output: o\n  priority: LOUD\n", 1, "priority 'LOUD'"),
        ("- macro: m\n", 1, "needs a condition"),
        ("- list: l\n  items: x\n", 1, "needs items"),
        ("- rule: a\n  macro: b\n  condition: c\n", 1, "exactly one of"),
        ("rule: a\n", 1, "must be a list"),
        ("- just a string\n", None, "not a mapping"),
        ("- rule: a\n  condition: c\n  override: {output: append}\n", 1, "does not set"),
        ("- rule: a\n  condition: c\n  append: yes please\n", 1, "append must be true or false"),
    ],
)
def test_invalid_rules_name_the_line_and_the_reason(document: str, line: int | None, words: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_rules(document)
    assert words in str(caught.value)
    if line:
        assert caught.value.problem.line == line


def test_rules_merge_forms_and_enable_only_items_are_accepted() -> None:
    document = (
        GOOD_RULE
        + """\
- rule: shell_in_container
  condition: and proc.pname != sshd
  append: true
- rule: shell_in_container
  output: replaced %proc.name
  override: {output: replace}
- rule: shell_in_container
  enabled: false
- list: shells
  items: [bash, zsh]
- macro: spawned
  condition: evt.type = execve
- required_engine_version: 0.31.0
- required_plugin_versions:
  - {name: container, version: 0.2.0}
"""
    )
    assert len(parse_rules(document)) == 8
    assert parse_rules("") == []
    assert check_rules([{"rule": "r", "desc": "d", "condition": "c", "output": "o", "priority": "debug"}])


def test_config_fragments_must_be_mappings_and_leave_the_agents_keys_alone() -> None:
    assert parse_config("libs_logger:\n  enabled: true\n") == {"libs_logger": {"enabled": True}}
    for document, words in [("- a\n", "non-empty mapping"), ("", "non-empty mapping"),
                            ("rules_files: [/tmp]\n", "cannot set rules_files"),
                            ("plugins: []\n", "Plugin resources")]:  # fmt: skip
        with pytest.raises(Invalid, match=words):
            parse_config(document)


def test_yaml_caps_refuse_deep_and_binary_documents() -> None:
    deep = "a:\n" + "".join("  " * depth + "b:\n" for depth in range(1, MAX_DEPTH + 2)) + "  " * (MAX_DEPTH + 2) + "c"
    with pytest.raises(YamlProblem, match="deeper"):
        load_yaml(deep)
    with pytest.raises(YamlProblem, match="UTF-8"):
        load_yaml(b"\xff\xfe")
    bomb = "a: &a [x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20)
    )
    with pytest.raises(YamlProblem, match="anchors and aliases") as refused:
        load_yaml(bomb)
    assert refused.value.problem.line == 1
