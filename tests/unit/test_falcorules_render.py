"""FalcoRules rendered into one rules file per namespace: scoping, names apart, guardrails (also against the
cluster's lists, as Falco substitutes them), files Falco's rules accept, and agents' refusals mapped to a rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from falco_operator.api import FalcoRule
from falco_operator.artifacts import parse_rules
from falco_operator.artifacts.messages import MAX_MESSAGE, MAX_QUOTED, capped, quoted
from falco_operator.artifacts.rules import RulesFile, check_rule_set
from falco_operator.falcorules.render import ClusterRules, cluster_rules, render, rule_at_line

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DEFAULT_RULES = SHARED / "testdata" / "falco-rules" / "falco_rules.yaml"


def falco_rule(name: str, namespace: str = "default", **spec: Any) -> FalcoRule:
    body = {"rule": name, "condition": "proc.name = bash", **spec}
    return FalcoRule.model_validate({"metadata": {"name": name, "namespace": namespace, "generation": 1},
                                     "spec": body})  # fmt: skip


def seed_rule() -> FalcoRule:
    document = YAML(typ="safe").load((SHARED / "examples" / "seed" / "09-falcorule-bash.yaml").read_text())
    document["metadata"]["generation"] = 1
    return FalcoRule.model_validate(document)


def default_cluster() -> ClusterRules:
    return cluster_rules([parse_rules(DEFAULT_RULES.read_bytes())], complete=True)


def test_seed_example_renders_scoped_and_loads_with_the_default_rules() -> None:
    rendered = render({"default": [seed_rule()]}, default_cluster())
    assert [v.accepted for v in rendered.verdicts] == [True]
    items = parse_rules(rendered.documents["default"])
    assert items[0]["rule"] == "shell_in_container [default]"
    assert items[0]["condition"] == 'k8s.ns.name = "default" and (container.id != host and proc.name = bash)'
    assert items[0]["output"].endswith("cmdline=%proc.cmdline) k8s_ns=default")
    assert items[0]["tags"] == ["namespace:default"]
    assert items[0]["priority"] == "WARNING"
    files = [RulesFile("falco_rules.yaml", parse_rules(DEFAULT_RULES.read_bytes())),
             RulesFile("60-03-falco-falcorules-default-inline.yaml", items)]  # fmt: skip
    assert [f for f in check_rule_set(files) if f.severity == "error"] == []


def test_two_teams_same_rule_name_stay_apart_and_sorted() -> None:
    rendered = render({"team-b": [falco_rule("shell")], "team-a": [falco_rule("shell")]}, default_cluster())
    names = {ns: [item["rule"] for item in parse_rules(doc)] for ns, doc in rendered.documents.items()}
    assert names == {"team-a": ["shell [team-a]"], "team-b": ["shell [team-b]"]}
    assert list(rendered.documents) == ["team-a", "team-b"]


def test_guardrails_refuse_and_keep_the_other_rules_of_the_namespace() -> None:
    cluster = default_cluster()
    rules = [
        falco_rule("good", condition="spawned_process and proc.name = bash"),
        falco_rule("unparsable", condition="proc.name = bash and (container.id != host"),
        falco_rule("unknown-macro", condition="spawned_proces and proc.name = bash"),
        falco_rule("unknown-field", condition="proc.nme = bash"),
        falco_rule("Terminal shell in container"),
        falco_rule("bad-output", output="shell %proc.nam"),
    ]
    rendered = render({"team-a": rules}, cluster)
    verdicts = {v.name: (v.accepted, v.reason, v.message) for v in rendered.verdicts}
    assert verdicts["good"][0] is True
    assert verdicts["unparsable"][:2] == (False, "InvalidCondition")
    assert "expected a ')' token" in verdicts["unparsable"][2]
    assert verdicts["unknown-macro"][:2] == (False, "UnknownMacro")
    assert "spawned_proces" in verdicts["unknown-macro"][2]
    assert verdicts["unknown-field"][:2] == (False, "InvalidRule")
    assert "proc.nme" in verdicts["unknown-field"][2]
    assert verdicts["Terminal shell in container"][:2] == (False, "NameCollision")
    assert verdicts["bad-output"][:2] == (False, "InvalidRule")
    assert [item["rule"] for item in parse_rules(rendered.documents["team-a"])] == ["good [team-a]"]


def test_unknown_macros_are_left_to_the_agents_when_some_cluster_rules_are_unreadable() -> None:
    partial = ClusterRules(complete=False)
    rendered = render({"team-a": [falco_rule("uses", condition="spawned_process and proc.name = bash")]}, partial)
    assert rendered.verdicts[0].accepted


def test_a_namespace_without_accepted_rules_gets_no_file() -> None:
    assert render({}, ClusterRules()).documents == {}
    refused = render({"team-a": [falco_rule("bad", condition="proc.nme = x")]}, ClusterRules())
    assert refused.documents == {}
    assert [v.reason for v in refused.verdicts] == ["InvalidRule"]


def test_refusals_of_huge_names_stay_short_and_quote_the_names_short() -> None:
    words = ["a" * 4000, "b" * 100, "c" * 4000]  # within the 8,192-character limit
    rules = [
        falco_rule("unknown-macros", condition=" and ".join(words)),
        falco_rule("collision", rule="r" * 1024),
        falco_rule("unparsable", condition="proc.name = " + "x" * 8000 + " y"),
    ]
    cluster = ClusterRules(rules=frozenset({"r" * 1024}))
    verdicts = {v.name: v for v in render({"team-a": rules}, cluster).verdicts}
    assert [v.accepted for v in verdicts.values()] == [False, False, False]
    for verdict in verdicts.values():
        assert len(verdict.message) <= MAX_MESSAGE, (verdict.name, verdict.message[:200])
    names = ", ".join(capped(word, MAX_QUOTED) for word in words)
    assert verdicts["unknown-macros"].message == f"the cluster's rules for this Falco define no macro {names}"
    assert verdicts["collision"].message.startswith(f"rule name {quoted('r' * 1024)} is a rule of the cluster's")


def test_a_list_of_the_cluster_used_as_a_value_is_refused_as_falco_substitutes_it() -> None:
    """``proc.name = shell_binaries``: Falco puts the list's items in place of the name, and refuses the rule."""
    cluster = default_cluster()
    rules = [
        falco_rule("as-value", condition="spawned_process and proc.name = shell_binaries"),
        falco_rule("in-list", condition="spawned_process and proc.name in (shell_binaries)"),
        falco_rule("as-macro", condition="shell_binaries and proc.name = bash"),
        falco_rule("not-a-list", condition="spawned_process and proc.name = shell_binarie"),
    ]
    verdicts = {v.name: v for v in render({"team-a": rules}, cluster).verdicts}
    assert (verdicts["as-value"].accepted, verdicts["as-value"].reason) == (False, "InvalidRule")
    assert "list shell_binaries put in place of its name" in verdicts["as-value"].message
    assert "proc.name in (my_list)" in verdicts["as-value"].message
    assert verdicts["in-list"].accepted
    assert verdicts["as-macro"].accepted is False
    assert verdicts["not-a-list"].accepted


def test_lists_are_substituted_also_when_some_cluster_rules_are_unreadable() -> None:
    cluster = cluster_rules([parse_rules(b"- list: shells\n  items: [bash, sh]\n")], complete=False)
    rules = [falco_rule("v", condition="proc.name = shells"),
             falco_rule("m", condition="unknown_macro and proc.name in (shells)")]  # fmt: skip
    verdicts = render({"t": rules}, cluster).verdicts
    assert [(v.name, v.accepted) for v in verdicts] == [("m", True), ("v", False)]


def test_cluster_lists_follow_appends_and_overrides_in_load_order() -> None:
    documents = [
        parse_rules(b"- list: a\n  items: [x]\n- list: b\n  items: [y]\n"),
        parse_rules(
            b"- list: a\n  items: [z]\n  append: true\n- list: b\n  items: [w]\n  override: {items: replace}\n"
            b"- list: ghost\n  items: [q]\n  append: true\n"
        ),
    ]
    assert cluster_rules(documents, complete=True).lists == (("a", ("x", "z")), ("b", ("w",)))


def test_a_single_item_list_compared_with_equals_loads_as_falco_loads_it() -> None:
    cluster = cluster_rules([parse_rules(b"- list: one\n  items: [bash]\n")], complete=True)
    (verdict,) = render({"t": [falco_rule("v", condition="proc.name = one")]}, cluster).verdicts
    assert verdict.accepted


def test_case_10_conditions_are_refused_with_falcos_reason() -> None:
    rules = [falco_rule("regex", condition='proc.name regex "a(b"'),
             falco_rule("lower", condition="tolower(proc.pid) = 1")]  # fmt: skip
    verdicts = {v.name: v for v in render({"t": rules}, default_cluster()).verdicts}
    assert verdicts["regex"].reason == "InvalidRule"
    assert "invalid regular expression 'a(b': missing )" in verdicts["regex"].message
    assert "tolower() cannot be applied to proc.pid" in verdicts["lower"].message


def test_the_rule_at_a_line_of_a_rendered_file() -> None:
    rules = [falco_rule("a"), falco_rule("b", tags=["x", "y"]), falco_rule("c")]
    document = render({"t": rules}, ClusterRules()).documents["t"].decode()
    lines = document.split("\n")
    starts = [number for number, text in enumerate(lines, start=1) if text.startswith("- ")]
    assert len(starts) == 3
    assert rule_at_line(document, 1) is None
    assert [rule_at_line(document, line) for line in starts] == [0, 1, 2]
    assert rule_at_line(document, starts[2] - 1) == 1
    assert rule_at_line(document, len(lines)) == 2
