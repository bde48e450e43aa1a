"""The set invariant (pure): what a plan writes is a rules set the full check passes, with the plugins the same set
configures; artifacts whose dependencies are pending, gone or unmet are withheld with a reason that names them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from falco_operator.api.plain import Plugin, Rulesfile
from falco_operator.artifacts import (
    CONFIG_DIR,
    PLUGINS_CONFIG_FILE,
    RULES_DIR,
    ArtifactKey,
    Content,
    Delivered,
    Medium,
    Plan,
    Problem,
    RulesFileView,
    Unavailable,
    load_yaml,
    plan,
)
from falco_operator.artifacts.needs import artifact_needs
from falco_operator.artifacts.rules import LoadContext, RulesFile, check_rule_set, rules_set_check
from falco_operator.artifacts.yamldoc import plain

PLUGINS = "/usr/share/falco/plugins"
MACRO_M = "- macro: m\n  condition: evt.num > 0\n"
USES_M = "- rule: uses m\n  desc: d\n  condition: m and evt.num < 9\n  output: o\n  priority: NOTICE\n"
OCI = {"reference": "registry.example/rules/base:1"}


def rulesfile(name: str, text: str | None = None, *, generation: int = 1, **spec: Any) -> Rulesfile:
    if text is not None:
        spec["inlineRules"] = text
    return Rulesfile.from_wire({"metadata": {"name": name, "generation": generation}, "spec": spec})


def plugin(name: str, plugin_name: str) -> Plugin:
    return Plugin.from_wire({"metadata": {"name": name, "generation": 1}, "spec": {"config": {
        "name": plugin_name, "libraryPath": f"/plugins/lib{plugin_name}.so"}}})  # fmt: skip


def planned(artifacts: Sequence[Any], last_good: Mapping[ArtifactKey, Delivered] | None = None,
            resolutions: Any = None) -> Plan:  # fmt: skip
    return plan(artifacts, resolutions or {}, last_good or {}, plugins_dir=PLUGINS, rules_set_check=rules_set_check)


def outcome(result: Plan, name: str) -> tuple[str, str | None, str]:
    found = next(o for o in result.outcomes if o.key.name == name)
    return found.state, found.reason, found.message or ""


def plugin_names(result: Plan) -> list[str]:
    fragment = result.directories[CONFIG_DIR].get(PLUGINS_CONFIG_FILE)
    if fragment is None:
        return []
    document = plain(load_yaml(fragment))
    assert [entry["name"] for entry in document["plugins"]] == document["load_plugins"]
    return list(document["load_plugins"])


def delivered(result: Plan) -> dict[ArtifactKey, Delivered]:
    """What each artifact has on disk after a plan (its last good files for the next one)."""
    return {o.key: o.delivered for o in result.outcomes if not o.delivered.empty}


def check_errors(result: Plan) -> list[str]:
    """The errors of the written rules set, checked as a whole with the plugins the same set configures."""
    written = sorted(result.directories[RULES_DIR].items())
    files = [RulesFile(name, load_yaml(data), data.decode()) for name, data in written]
    context = LoadContext(dict.fromkeys(plugin_names(result)))
    return [str(finding) for finding in check_rule_set(files, context=context) if finding.severity == "error"]


def test_case_1_a_dependency_deleted_takes_its_dependents_files_out_in_the_same_swap() -> None:
    base, team = rulesfile("base", MACRO_M, priority=10), rulesfile("team", USES_M)
    first = planned([base, team])
    assert sorted(first.directories[RULES_DIR]) == ["10-03-base-inline.yaml", "50-03-team-inline.yaml"]

    gone = planned([team], delivered(first))  # base deleted, or its selector no longer matches this node
    assert gone.directories[RULES_DIR] == {}
    assert check_errors(gone) == []
    state, reason, message = outcome(gone, "team")
    assert (state, reason) == ("Failed", "DependencyGone")
    assert message.startswith("needs Rulesfile base (10-03-base-inline.yaml), which no longer applies to this Falco")
    assert "undefined macro 'm'" in message
    assert not next(o for o in gone.outcomes if o.key.name == "team").delivered.files

    # The next pass (a Falco answer, say) still knows why; base coming back brings team back.
    later = planned([team], gone.remembered)
    assert outcome(later, "team")[:2] == ("Failed", "DependencyGone")
    assert later.directories[RULES_DIR] == {}
    back = planned([base, team], later.remembered)
    assert back.directories == first.directories
    assert outcome(back, "team")[:2] == ("Installed", "Installed")


def test_case_1_a_dependent_kept_on_its_last_good_files_loses_them_when_its_dependency_leaves() -> None:
    base, team = rulesfile("base", MACRO_M, priority=10), rulesfile("team", USES_M)
    first = planned([base, team])
    broken_team = rulesfile("team", "- rule: r\n  desc: d\n", generation=2)  # invalid: last good files stay
    second = planned([base, broken_team], delivered(first))
    assert "50-03-team-inline.yaml" in second.directories[RULES_DIR]

    third = planned([broken_team], delivered(second))
    assert third.directories[RULES_DIR] == {}
    assert check_errors(third) == []
    state, reason, message = outcome(third, "team")
    assert (state, reason) == ("Invalid", "InvalidContent")
    assert "its last good files are removed as well (DependencyGone: needs Rulesfile base" in message


def test_case_1_a_dependency_of_a_withheld_dependent_is_named() -> None:
    base = rulesfile("base", MACRO_M, priority=10)
    team = rulesfile("team", "- macro: t\n  condition: m\n", priority=20)
    other = rulesfile("other", "- rule: r\n  desc: d\n  condition: t\n  output: o\n  priority: INFO\n", priority=30)
    first = planned([base, team, other])
    gone = planned([team, other], delivered(first))
    assert gone.directories[RULES_DIR] == {}
    assert outcome(gone, "team")[:2] == ("Failed", "DependencyGone")
    state, reason, message = outcome(gone, "other")
    assert (state, reason) == ("Failed", "DependencyGone")
    assert message.startswith("needs Rulesfile base (10-03-base-inline.yaml), which no longer applies to this Falco")
    assert "; Rulesfile team, which is not written here (Failed, DependencyGone): " in message
    assert "undefined macro 't'" in message


def test_case_2_a_plugin_name_taken_after_delivery_is_configured_once() -> None:
    b = plugin("b", "k8saudit")
    first = planned([b])
    assert plugin_names(first) == ["k8saudit"]

    a = plugin("a", "k8saudit")  # a new Plugin with the same plugin name, first by object name
    second = planned([a, b], delivered(first))
    assert plugin_names(second) == ["k8saudit"]
    assert outcome(second, "a")[:2] == ("Installed", "Installed")
    state, reason, message = outcome(second, "b")
    assert (state, reason) == ("Invalid", "NameConflict")
    assert message == "plugin name 'k8saudit' is already configured by Plugin a; give this one another name"
    assert next(o for o in second.outcomes if o.key.name == "b").delivered.empty


def test_case_8_a_dependency_still_being_pulled_makes_its_dependents_pending() -> None:
    base = rulesfile("base", priority=10, ociArtifact=OCI)
    team = rulesfile("team", USES_M)
    pulling = Unavailable("Pending", "Resolving", "the OCI source is being read")
    key = ArtifactKey("Rulesfile", "base")
    waiting = planned([base, team], resolutions={(key, Medium.OCI): pulling})
    assert waiting.directories[RULES_DIR] == {}
    state, reason, message = outcome(waiting, "team")
    assert (state, reason) == ("Pending", "DependencyPending")
    assert message.startswith("waits for Rulesfile base, still being read: ")
    assert "undefined macro 'm'" in message

    arrived = planned([base, team], delivered(waiting), {(key, Medium.OCI): Content(MACRO_M.encode(), "sha256:1")})
    assert sorted(arrived.directories[RULES_DIR]) == ["10-01-base-oci.yaml", "50-03-team-inline.yaml"]
    assert [o.state for o in arrived.outcomes] == ["Installed", "Installed"]


def test_rules_using_fields_of_a_plugin_still_being_pulled_wait_for_it() -> None:
    container = Plugin.from_wire({"metadata": {"name": "container", "generation": 1}, "spec": {
        "ociArtifact": {"reference": "registry.example/plugins/container:0.7.1"}}})  # fmt: skip
    uses = rulesfile("uses", "- rule: c\n  desc: d\n  condition: container.id != host\n  output: o\n  priority: INFO\n")
    waiting = planned([container, uses])
    assert outcome(waiting, "container")[:2] == ("Pending", "Resolving")
    state, reason, message = outcome(waiting, "uses")
    assert (state, reason) == ("Pending", "DependencyPending")
    assert message.startswith("waits for Plugin container, still being read: ")
    assert waiting.directories[RULES_DIR] == {}
    library = {(ArtifactKey("Plugin", "container"), Medium.OCI): Content(b"\x7fELF", "sha256:c")}
    arrived = planned([container, uses], delivered(waiting), library)
    assert [o.state for o in arrived.outcomes] == ["Installed", "Installed"]
    assert plugin_names(arrived) == ["container"]


def test_a_plugin_being_pulled_again_while_its_last_entry_stays_is_not_waited_for() -> None:
    container = Plugin.from_wire({"metadata": {"name": "container", "generation": 2}, "spec": {
        "ociArtifact": {"reference": "registry.example/plugins/container:0.7.2"}}})  # fmt: skip
    last = plan([plugin("container", "container")], {}, {}, plugins_dir=PLUGINS)
    broken = rulesfile("broken", "- rule: b\n  desc: d\n  condition: proc.nam = x\n  output: o\n  priority: INFO\n")
    result = planned([container, broken], delivered(last))
    assert outcome(result, "container")[0] == "Pending"
    assert plugin_names(result) == ["container"]
    assert outcome(result, "broken")[:2] == ("Invalid", "InvalidRules")


def test_case_8_a_pending_rulesfile_that_loads_later_is_not_waited_for() -> None:
    late = rulesfile("late", priority=90, ociArtifact=OCI)
    team = rulesfile("team", USES_M)
    result = planned([late, team])
    assert outcome(result, "late")[0] == "Pending"
    assert outcome(result, "team")[:2] == ("Invalid", "InvalidRules")


def test_case_9_a_rule_may_not_use_a_macro_that_only_a_later_file_defines() -> None:
    team = rulesfile("team", USES_M, priority=10)
    base = rulesfile("base", MACRO_M, priority=70)
    result = planned([base, team])
    assert list(result.directories[RULES_DIR]) == ["70-03-base-inline.yaml"]
    state, reason, message = outcome(result, "team")
    assert (state, reason) == ("Invalid", "InvalidRules")
    assert "undefined macro 'm'" in message
    # The same file at a later priority than the macro's: loaded.
    fine = planned([base, rulesfile("team", USES_M, priority=80)])
    assert sorted(fine.directories[RULES_DIR]) == ["70-03-base-inline.yaml", "80-03-team-inline.yaml"]


def test_case_9_a_generated_falcorules_file_using_a_macro_of_a_later_rulesfile_is_refused() -> None:
    generated = rulesfile("falco-falcorules", USES_M, priority=60, configMapRef={"name": "falco-falcorules"})
    cluster = rulesfile("cluster", MACRO_M, priority=70)
    key = ArtifactKey("Rulesfile", "falco-falcorules")
    result = planned([cluster, generated], resolutions={(key, Medium.CONFIGMAP): Content(USES_M.encode())})
    assert list(result.directories[RULES_DIR]) == ["70-03-cluster-inline.yaml"]
    assert outcome(result, "falco-falcorules")[:2] == ("Invalid", "InvalidRules")


def test_the_check_gets_the_plugins_the_same_set_configures_with_the_versions_of_their_libraries() -> None:
    contexts: list[LoadContext | None] = []

    def check(views: Sequence[RulesFileView], context: LoadContext | None) -> dict[ArtifactKey, Problem]:
        contexts.append(context)
        return {}

    from_oci = Plugin.from_wire({"metadata": {"name": "k8saudit", "generation": 1}, "spec": {
        "ociArtifact": {"reference": "registry.example/plugins/k8saudit:0.18.0"}}})  # fmt: skip
    library = {(ArtifactKey("Plugin", "k8saudit"), Medium.OCI): Content(b"\x7fELF", "sha256:k8s")}
    plan([plugin("container", "container"), from_oci, plugin("later", "k8saudit"), rulesfile("r", MACRO_M)], library,
         {}, plugins_dir=PLUGINS, rules_set_check=check, plugin_versions={"sha256:k8s": "0.18.0", "sha256:x": "9"},
         engine_version="0.62.0")  # fmt: skip
    assert contexts == [LoadContext({"container": None, "k8saudit": "0.18.0"}, "0.62.0")]


def test_an_artifact_that_only_fails_with_the_plugins_of_this_set_has_unmet_requirements() -> None:
    def check(views: Sequence[RulesFileView], context: LoadContext | None) -> dict[ArtifactKey, Problem]:
        plugins = context.plugins if context is not None else None
        if plugins is not None and "container" not in plugins and any(v.key.name == "r" for v in views):
            return {ArtifactKey("Rulesfile", "r"): Problem("field container.id needs the container plugin")}
        return {}

    result = plan([rulesfile("r", MACRO_M)], {}, {}, plugins_dir=PLUGINS, rules_set_check=check)
    assert outcome(result, "r") == ("Failed", "RequirementsNotMet", "field container.id needs the container plugin; "
                                    "nothing is written for it until then")  # fmt: skip
    assert result.directories[RULES_DIR] == {}
    with_plugin = plan([rulesfile("r", MACRO_M), plugin("container", "container")], {}, {}, plugins_dir=PLUGINS,
                       rules_set_check=check)  # fmt: skip
    assert outcome(with_plugin, "r")[:2] == ("Installed", "Installed")


def test_the_needs_an_oci_config_states_are_read_in_falcoctls_form() -> None:
    config = {"name": "falco-rules", "version": "4.0.0", "requirements": [{"name": "engine_version_semver",
              "version": "0.50.0"}], "dependencies": [{"name": "container", "version": "0.4.0", "alternatives": [
              {"name": "k8smeta", "version": "0.1.0"}]}, {"name": "json"}, "junk"]}  # fmt: skip
    needs = artifact_needs(config)
    assert needs.engine == "0.50.0"
    assert [[(r.name, r.version) for r in alternatives] for alternatives in needs.dependencies] == [
        [("container", "0.4.0"), ("k8smeta", "0.1.0")]
    ]
    assert artifact_needs(None).empty
    assert artifact_needs({"dependencies": "x"}).empty


def test_rules_whose_oci_config_needs_a_plugin_the_set_lacks_are_withheld() -> None:
    rules = rulesfile("falco-rules", ociArtifact=OCI)
    pulled = {(ArtifactKey("Rulesfile", "falco-rules"), Medium.OCI): Content(MACRO_M.encode(), "sha256:rules")}
    needs = {"sha256:rules": artifact_needs({"dependencies": [{"name": "container", "version": "0.4.0"}]})}
    container = Plugin.from_wire({"metadata": {"name": "container", "generation": 1}, "spec": {
        "ociArtifact": {"reference": "registry.example/plugins/container:0.7.1"}}})  # fmt: skip

    def planned_with(plugins: list[Any], versions: dict[str, str]) -> Plan:
        library = {(ArtifactKey("Plugin", "container"), Medium.OCI): Content(b"\x7fELF", "sha256:c")}
        return plan([rules, *plugins], pulled | library, {}, plugins_dir=PLUGINS, rules_set_check=rules_set_check,
                    plugin_versions=versions, artifact_needs=needs)  # fmt: skip

    alone = planned_with([], {})
    assert outcome(alone, "falco-rules") == (
        "Failed", "RequirementsNotMet", "its OCI artifact's config (dependencies): it needs a plugin this Falco does "
        "not load: add a Plugin for container (>= 0.4.0); nothing is written for it until then")  # fmt: skip
    assert alone.directories[RULES_DIR] == {}
    assert outcome(planned_with([container], {"sha256:c": "0.7.1"}), "falco-rules")[0] == "Installed"
    assert outcome(planned_with([container], {}), "falco-rules")[0] == "Installed", "version unknown: not judged"
    too_new = planned_with([container], {"sha256:c": "1.0.0"})
    state, reason, message = outcome(too_new, "falco-rules")
    assert (state, reason) == ("Failed", "RequirementsNotMet")
    assert "it needs plugin container >= 0.4.0 (same major version), but this Falco loads container 1.0.0" in message


def test_a_plugin_whose_oci_config_needs_a_newer_engine_leaves_and_takes_its_rules_with_it() -> None:
    container = Plugin.from_wire({"metadata": {"name": "container", "generation": 1}, "spec": {
        "ociArtifact": {"reference": "registry.example/plugins/container:9.0.0"}}})  # fmt: skip
    uses = rulesfile("uses", "- rule: c\n  desc: d\n  condition: container.id != host\n  output: o\n  priority: INFO\n")
    library = {(ArtifactKey("Plugin", "container"), Medium.OCI): Content(b"\x7fELF", "sha256:c")}
    needs = {"sha256:c": artifact_needs({"requirements": [{"name": "engine_version_semver", "version": "0.99.0"}]})}
    result = plan([container, uses], library, {}, plugins_dir=PLUGINS, rules_set_check=rules_set_check,
                  engine_version="0.62.0", artifact_needs=needs)  # fmt: skip
    state, reason, message = outcome(result, "container")
    assert (state, reason) == ("Failed", "RequirementsNotMet")
    assert "it needs Falco engine version 0.99.0, but this Falco's engine is 0.62.0" in message
    assert plugin_names(result) == []
    assert outcome(result, "uses")[:2] == ("Failed", "RequirementsNotMet")
    assert result.directories[RULES_DIR] == {}
