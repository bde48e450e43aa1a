"""The rule-set check with what the Falco that loads the set provides (``LoadContext``): fields of plugins it does
not load, field classes nothing provides, plugin and engine requirements, deprecated fields (issue 23, cases 3, 4,
7 and 11). Each expectation here was checked against real Falco 0.44.1 (tests/integration/test_rules_plugins.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from falco_operator.artifacts import parse_rules
from falco_operator.artifacts.rules import FieldCatalogue, Finding, LoadContext, RulesFile, check_rule_set
from falco_operator.artifacts.rules.requirements import Requirement, engine_problem, plugin_requirement_verdict

RULES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "falco-rules"
PUBLISHED = {"container": "0.7.1", "k8saudit": "0.18.0", "json": "0.7.4", "cloudtrail": "0.17.1", "okta": "0.12.0",
             "github": "0.10.1", "gcpaudit": "0.8.1"}  # fmt: skip
EVERYTHING = LoadContext(PUBLISHED, "0.62.0")


def rule(condition: str = "evt.type = open", output: str = "o", source: str | None = None) -> str:
    text = f"- rule: r\n  desc: d\n  condition: {condition}\n  output: {output}\n  priority: INFO\n"
    return text + (f"  source: {source}\n" if source else "")


def findings(text: str, context: LoadContext | None, name: str = "r.yaml") -> list[Finding]:
    return check_rule_set([RulesFile(name, parse_rules(text.encode()), text)], context=context)


def errors(text: str, context: LoadContext | None) -> list[str]:
    return [finding.message for finding in findings(text, context) if finding.severity == "error"]


def warnings(text: str, context: LoadContext | None) -> list[str]:
    return [finding.message for finding in findings(text, context) if finding.severity == "warning"]


def published(name: str) -> str:
    return (RULES / name).read_text()


# -- the catalogue ----------------------------------------------------------------------------------------


def test_every_published_plugin_is_catalogued_with_its_fields() -> None:
    catalogue = FieldCatalogue.load()
    assert {name: info.version for name, info in catalogue.plugins().items() if info.version} == {
        **PUBLISHED,
        "k8saudit-gke": "0.9.0",
    }
    for field, plugins in [("okta.app", ("okta",)), ("github.repo", ("github",)), ("gcp.user", ("gcpaudit",)),
                           ("ka.verb", ("k8saudit", "k8saudit-gke")), ("ct.name", ("cloudtrail",)),
                           ("k8s.ns.name", ("container",)), ("json.value", ("json",)), ("proc.name", ())]:  # fmt: skip
        found = catalogue.lookup(field, "/x" if field == "json.value" else None)
        assert found.info is not None, field
        assert found.info.plugins == plugins, field
    assert catalogue.lookup("okta.nosuchfield", None).severity == "error", "okta's fields are checked now"


# -- case 3: fields of plugins this Falco does not load ----------------------------------------------------


def test_a_field_of_a_plugin_not_loaded_is_an_error_with_a_context() -> None:
    scoped = rule("evt.type = open and k8s.ns.name = team-a")
    assert errors(scoped, None) == [], "without a context: today's verdict"
    assert errors(scoped, LoadContext({"container": "0.7.1"})) == []
    assert errors(scoped, LoadContext({})) == [
        "rule 'r': field k8s.ns.name needs the container plugin, which this Falco does not load"
    ]
    assert errors(rule(output="in %k8s.pod.name"), LoadContext({"json": None})) == [
        "rule 'r' output: %k8s.pod.name is not a known field (field k8s.pod.name needs the container plugin, which "
        "this Falco does not load)"
    ]


def test_a_plugin_field_in_a_rule_of_another_source_is_an_error() -> None:
    assert errors(rule("ka.verb = create", source="k8s_audit"), EVERYTHING) == []
    assert errors(rule("ct.name = x", source="k8s_audit"), EVERYTHING) == [
        "rule 'r': field ct.name is not available in rules of source k8s_audit (only aws_cloudtrail)"
    ]
    assert errors(rule("evt.type = open and proc.name = x", source="k8s_audit"), EVERYTHING)


def test_either_provider_of_the_k8saudit_fields_will_do() -> None:
    audit = rule("ka.verb = create", source="k8s_audit")
    assert errors(audit, LoadContext({"k8saudit-gke": "0.9.0"})) == []
    assert errors(audit, LoadContext({"k8saudit": "0.18.0"})) == []
    assert errors(rule("evt.type = open and ka.verb = create"), LoadContext({"json": "0.7.4"})) == [
        "rule 'r': field ka.verb needs the k8saudit or k8saudit-gke plugin, which this Falco does not load"
    ]


def test_rules_of_a_source_no_loaded_plugin_provides_are_skipped_with_a_warning() -> None:
    audit = rule("ka.verb = create", source="k8s_audit")
    assert errors(audit, LoadContext({"container": "0.7.1"})) == []
    assert warnings(audit, LoadContext({"container": "0.7.1"})) == [
        "rule 'r': no plugin this Falco loads provides the source 'k8s_audit'; Falco skips the rule"
    ]


def test_a_plugin_not_catalogued_makes_its_possible_fields_warnings() -> None:
    """k8saudit-eks provides the ka.* fields too, and is not catalogued: not judged, said as a warning."""
    audit = rule("ka.verb = create", source="k8s_audit")
    context = LoadContext({"k8saudit-eks": "0.12.0", "json": "0.7.4"})
    assert errors(audit, context) == []
    assert any("k8saudit-eks may provide it" in message for message in warnings(audit, context))


# -- case 11: a field class nothing provides ---------------------------------------------------------------


def test_an_unknown_field_class_is_an_error_when_every_loaded_plugin_is_catalogued() -> None:
    typo = published("falco_rules.yaml").replace("%user.name", "%usr.name", 1)
    assert errors(typo, None) == [], "without a context a plugin could provide it: a warning"
    assert any("usr.name is not checked" in message for message in warnings(typo, None))
    (message,) = errors(typo, EVERYTHING)
    assert message.startswith("rule 'Directory traversal monitored file read' output: %usr.name is not a known "
                              "field (unknown field usr.name: neither Falco nor a plugin it loads")  # fmt: skip
    assert errors(rule("usr.name = root"), LoadContext({"container": "0.7.1"})) == [
        "rule 'r': unknown field usr.name: neither Falco nor a plugin it loads (plugins: container) has fields of "
        "class 'usr'"
    ]
    unknown_plugin = LoadContext({"container": "0.7.1", "myplugin": None})
    assert errors(typo, unknown_plugin) == []
    assert any("plugin myplugin may provide it" in message for message in warnings(typo, unknown_plugin))


# -- case 4: requirements ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("have", "need", "met"),
    [("0.7.4", "0.7.0", True), ("0.7.4", "0.7.4", True), ("0.7.4", "0.7.5", False), ("0.7.4", "0.8.0", False),
     ("0.7.4", "0.6.9", True), ("0.7.4", "1.0.0", False), ("1.2.0", "0.7.0", False), ("0.7.4-rc1", "0.7.4", True)],
)  # fmt: skip
def test_plugin_versions_are_compared_as_falco_compares_them(have: str, need: str, met: bool) -> None:
    verdict = plugin_requirement_verdict([Requirement("json", need)], {"json": have})
    assert (verdict is None) is met


def test_the_first_loaded_alternative_decides() -> None:
    """As Falco: json 0.7.4 too old for 0.8.0 fails even though the container alternative would be met."""
    alternatives = [Requirement("json", "0.8.0"), Requirement("container", "0.1.0")]
    verdict = plugin_requirement_verdict(alternatives, {"json": "0.7.4", "container": "0.7.1"})
    assert verdict is not None
    assert verdict.severity == "error"
    assert plugin_requirement_verdict(alternatives, {"container": "0.7.1"}) is None


def test_engine_versions_are_compared_as_falco_compares_them() -> None:
    assert engine_problem("0.57.0", "0.62.0") is None
    assert engine_problem(57, "0.62.0") is None, "a whole number N is 0.N.0"
    assert engine_problem(70, "0.62.0") is not None
    assert engine_problem("0.70.0", "0.62.0") == (
        "the rules require Falco engine version 0.70.0, but this Falco's engine is 0.62.0: run a Falco whose engine "
        "meets it, or use a version of these rules made for this Falco"
    )


def test_plugin_requirements_are_checked_against_the_context() -> None:
    audit = published("k8s_audit_rules.yaml")
    assert errors(audit, None) == []
    assert errors(audit, LoadContext({"k8saudit": "0.18.0", "json": "0.7.4"}, "0.62.0")) == []
    assert errors(audit, LoadContext({"k8saudit-gke": "0.9.0", "json": "0.7.4"})) == [], "an alternative"
    assert errors(audit, LoadContext({"container": "0.7.1"})) == [
        "the rules require a plugin this Falco does not load: add a Plugin for one of k8saudit (>= 0.18.0), "
        "k8saudit-aks (>= 0.6.0), k8saudit-eks (>= 0.12.0), k8saudit-gke (>= 0.9.0), k8saudit-ovh (>= 0.6.0)",
        "the rules require a plugin this Falco does not load: add a Plugin for json (>= 0.7.0)",
    ]
    assert errors(audit, LoadContext({"k8saudit": "0.17.0", "json": "0.7.4"})) == [
        "the rules require plugin k8saudit >= 0.18.0 (same major version), but this Falco loads k8saudit 0.17.0: "
        "deliver a version that meets it"
    ]


def test_an_unknown_version_cannot_be_judged_and_says_so() -> None:
    default = published("falco_rules.yaml")
    context = LoadContext({"container": None})
    assert errors(default, context) == []
    assert warnings(default, context) == [
        "required_engine_version '0.57.0' is not checked: the engine version of the Falco that loads these rules is "
        "not known",
        "the rules require plugin container >= 0.4.0; the version of container this Falco loads is not known, so "
        "that is not checked",
    ]


def test_the_engine_requirement_is_checked_against_the_context() -> None:
    default = published("falco_rules.yaml")
    assert errors(default, LoadContext({"container": "0.7.1"}, "0.62.0")) == []
    (message,) = errors(default, LoadContext({"container": "0.7.1"}, "0.40.0"))
    assert message.startswith("the rules require Falco engine version 0.57.0, but this Falco's engine is 0.40.0")


def test_a_required_version_must_have_three_numbers() -> None:
    text = "- required_plugin_versions:\n  - name: json\n    version: 0.7\n"
    assert errors(text, None) == ["invalid required version '0.7' for plugin 'json': write x.y.z"]


# -- case 7: deprecated fields -----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["evt.dir", "evt.latency", "evt.latency.human", "evt.wait_latency"])
def test_a_deprecated_field_is_accepted_with_a_warning(field: str) -> None:
    text = rule(f"evt.type = open and {field} exists", output=f"x %{field}")
    for context in (None, EVERYTHING):
        assert errors(text, context) == []
        expected = f"field {field} is deprecated: Falco accepts it with a warning (LOAD_DEPRECATED_ITEM)"
        assert any(
            message.endswith(expected + " and may drop it in a later version") for message in warnings(text, context)
        )


def test_a_deprecated_field_compares_with_direction_values() -> None:
    assert errors(rule("evt.type = open and evt.dir = <"), EVERYTHING) == []
