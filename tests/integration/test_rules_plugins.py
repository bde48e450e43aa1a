"""The rules validator with the plugins a Falco loads agrees with real Falco (``falco -V`` with those plugins, from
../shared/falco/plugins): the published rules files with their plugins, each case of issue 23 the context decides
(fields of plugins not loaded, field classes nothing provides, plugin and engine requirements, deprecated fields),
and mutations of the plugin rule sets. See docs/rules-validation.md.

One Falco run per verdict: Falco loads every ``-V`` file into one engine, so a file after a failed one is reported
failed too, and a file after another one sees its macros, lists and rules; batching mutations would change their
verdicts. A run with plugins takes about 0.1 s."""

from __future__ import annotations

import copy
import random
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from e2e.falco import FalcoBinaries, validate_rules
from e2e.falco_verdict import FalcoVerdict
from falco_operator.artifacts import Invalid, parse_rules
from falco_operator.artifacts.rules import FieldCatalogue, Finding, LoadContext, RulesFile, check_rule_set
from tests.rules_mutations import FIELD, TOKEN, Mutation, mutations

RULES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "falco-rules"
PLUGINS_OF = {
    "falco_rules.yaml": ["container"],
    "falco-incubating_rules.yaml": ["container"],
    "k8s_audit_rules.yaml": ["k8saudit", "json"],
    "aws_cloudtrail_rules.yaml": ["cloudtrail", "json"],
}
"""The plugins each published rules file needs (its ``required_plugin_versions``)."""
BEFORE = {"falco-incubating_rules.yaml": ["falco_rules.yaml"]}
"""Files that must load before (the incubating rules use the default rules' macros and lists)."""
MUTATIONS = {"k8s_audit_rules.yaml": 90, "aws_cloudtrail_rules.yaml": 60}
PLUGIN_MUTATIONS = 40


def engine_version(falco: FalcoBinaries) -> str:
    output = subprocess.run([str(falco.falco), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Engine:\s*(\S+)", output)
    assert match, output
    return match.group(1)


def context_for(plugins: Sequence[str], falco: FalcoBinaries) -> LoadContext:
    """What a Falco loading ``plugins`` from ../shared/falco provides (the catalogue was generated from them)."""
    catalogue = FieldCatalogue.load().plugins()
    return LoadContext({name: catalogue[name].version for name in plugins}, engine_version(falco))


def ours(files: Sequence[tuple[str, bytes]], context: LoadContext | None) -> list[Finding]:
    loaded = []
    for name, data in files:
        try:
            loaded.append(RulesFile(name, parse_rules(data), data.decode()))
        except Invalid as invalid:
            return [Finding(name, invalid.problem.line, None, "error", invalid.problem.message)]
    return check_rule_set(loaded, context=context)


def errors_of(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding.severity == "error"]


def said(verdict: FalcoVerdict) -> str:
    messages = [f"{error.get('code')}: {error.get('message')}" for error in verdict.errors()]
    return "; ".join(messages) or verdict.failure or "accepted"


@pytest.mark.parametrize("name", sorted(PLUGINS_OF))
def test_every_published_rules_file_loads_with_its_plugins(falco_binaries: FalcoBinaries, name: str) -> None:
    paths = [RULES / before for before in BEFORE.get(name, [])] + [RULES / name]
    plugins = PLUGINS_OF[name]
    verdict = validate_rules(paths, binaries=falco_binaries, plugins=plugins)
    assert verdict.successful, said(verdict)
    files = [(path.name, path.read_bytes()) for path in paths]
    assert ours(files, context_for(plugins, falco_binaries)) == [], "no error and no warning, as Falco"
    without = [plugin for plugin in plugins if plugin != "json"] if "json" in plugins else []
    refused = validate_rules(paths, binaries=falco_binaries, plugins=without)
    assert not refused.successful, "without its plugins Falco refuses it"
    assert errors_of(ours(files, context_for(without, falco_binaries))), f"Falco: {said(refused)}"


def test_every_published_rules_file_together_with_every_plugin(falco_binaries: FalcoBinaries) -> None:
    names = ["falco_rules.yaml", "falco-incubating_rules.yaml", "k8s_audit_rules.yaml", "aws_cloudtrail_rules.yaml"]
    plugins = ["container", "k8saudit", "json", "cloudtrail", "okta", "github", "gcpaudit"]
    verdict = validate_rules([RULES / name for name in names], binaries=falco_binaries, plugins=plugins)
    assert verdict.successful, said(verdict)
    files = [(name, (RULES / name).read_bytes()) for name in names]
    assert ours(files, context_for(plugins, falco_binaries)) == []


@dataclass(frozen=True)
class Case:
    what: str
    text: str
    plugins: tuple[str, ...]
    fragment: str
    """In our first error (or, when Falco accepts, in a warning; empty: no warning expected)."""


def _rule(condition: str, output: str = "o", source: str = "") -> str:
    text = f'- rule: r\n  desc: d\n  condition: {condition}\n  output: "{output}"\n  priority: INFO\n'
    return text + (f"  source: {source}\n" if source else "")


DEFAULT = (RULES / "falco_rules.yaml").read_text()
AUDIT = (RULES / "k8s_audit_rules.yaml").read_text()
CASES = [
    Case("3: a container field on a Falco without the container plugin",
         _rule("evt.type = open and k8s.ns.name = team-a"), (), "needs the container plugin"),
    Case("3: the same with the container plugin", _rule("evt.type = open and k8s.ns.name = team-a"),
         ("container",), ""),
    Case("3: a container field in an output without the plugin", _rule("evt.type = open", "o %container.name"),
         ("json",), "needs the container plugin"),
    Case("3: a cloudtrail field in a k8s_audit rule", _rule("ct.name = x", source="k8s_audit"),
         ("k8saudit", "cloudtrail", "json"), "not available in rules of source k8s_audit"),
    Case("3: a syscall field in an okta rule", _rule("proc.name = x", source="okta"), ("okta",),
         "not available in rules of source okta"),
    Case("3: an okta field with okta", _rule("okta.app = x", "%okta.actor.name", source="okta"), ("okta",), ""),
    Case("3: a github field with github", _rule("github.repo = x", "%github.user", source="github"), ("github",),
         ""),
    Case("3: a gcp field with gcpaudit", _rule("gcp.user = x", "%gcp.callerIP", source="gcp_auditlog"),
         ("gcpaudit",), ""),
    Case("3: an okta field that does not exist", _rule("okta.nosuch = x", source="okta"), ("okta",),
         "unknown field okta.nosuch"),
    Case("3: a k8saudit field with k8saudit-gke", _rule("ka.verb = create", "%ka.user.name", source="k8s_audit"),
         ("k8saudit-gke",), ""),
    Case("11: a field class nothing provides, in an output", DEFAULT.replace("%user.name", "%usr.name", 1),
         ("container",), "neither Falco nor a plugin it loads"),
    Case("11: a field class nothing provides, in a condition", _rule("evt.type = open and usr.name = root"),
         ("container", "json"), "neither Falco nor a plugin it loads"),
    Case("4: k8s_audit_rules.yaml without k8saudit and json", AUDIT, ("container",),
         "the rules require a plugin this Falco does not load"),
    Case("4: k8s_audit_rules.yaml without json", AUDIT, ("k8saudit",), "add a Plugin for json (>= 0.7.0)"),
    Case("4: k8s_audit_rules.yaml with k8saudit-gke, an alternative", AUDIT, ("k8saudit-gke", "json"), ""),
    Case("4: a newer plugin minor version required", "- required_plugin_versions:\n  - name: json\n"
         "    version: 0.8.0\n", ("json",), "json >= 0.8.0"),
    Case("4: a newer major version required", "- required_plugin_versions:\n  - name: json\n    version: 1.0.0\n",
         ("json",), "json >= 1.0.0"),
    Case("4: an older minor version required", "- required_plugin_versions:\n  - name: json\n    version: 0.6.0\n",
         ("json",), ""),
    Case("4: the first loaded alternative decides", "- required_plugin_versions:\n  - name: json\n    version: 0.8.0\n"
         "    alternatives:\n    - name: container\n      version: 0.1.0\n", ("json", "container"), "json >= 0.8.0"),
    Case("4: an alternative that is loaded", "- required_plugin_versions:\n  - name: k8saudit\n    version: 0.8.0\n"
         "    alternatives:\n    - name: json\n      version: 0.1.0\n", ("json",), ""),
    Case("4: a version with two numbers", "- required_plugin_versions:\n  - name: json\n    version: 0.7\n",
         ("json",), "write x.y.z"),
    Case("4: a newer engine", "- required_engine_version: 0.70.0\n", (), "engine version 0.70.0"),
    Case("4: a newer engine as a whole number", "- required_engine_version: 70\n", (), "engine version 0.70.0"),
    Case("4: an older engine", "- required_engine_version: 0.26.0\n", (), ""),
    Case("7: evt.dir", _rule("evt.type = open and evt.dir = <", "%evt.dir"), (), "field evt.dir is deprecated"),
    Case("7: evt.latency", _rule("evt.type = open and evt.latency > 0"), (), "field evt.latency is deprecated"),
    Case("7: evt.wait_latency in an output", _rule("evt.type = open", "%evt.wait_latency"), (),
         "field evt.wait_latency is deprecated"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.what for case in CASES])
def test_each_case_gets_falcos_verdict(falco_binaries: FalcoBinaries, tmp_path: Path, case: Case) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(case.text)
    verdict = validate_rules([path], binaries=falco_binaries, plugins=list(case.plugins))
    findings = ours([(path.name, case.text.encode())], context_for(case.plugins, falco_binaries))
    errors = errors_of(findings)
    assert verdict.successful == (not errors), f"Falco: {said(verdict)}; ours: {[str(f) for f in findings]}"
    if errors:
        assert case.fragment in errors[0].message, f"{errors[0]} (Falco: {said(verdict)})"
    elif case.fragment:
        assert any(case.fragment in finding.message for finding in findings), [str(f) for f in findings]
        codes = {str(warning.get("code")) for result in verdict.results for warning in result.get("warnings") or []}
        assert "LOAD_DEPRECATED_ITEM" in codes, "Falco warns too"
    else:
        assert findings == [], "no warning where Falco has none"


# -- mutations of the plugin rule sets ---------------------------------------------------------------------


def plugin_mutations(items: list[dict[str, Any]], count: int, seed: int) -> Iterator[Mutation]:
    """Changes only plugins make interesting: a field replaced by one of another plugin or source, or by a
    deprecated one; a required plugin version moved up or down."""
    chooser = random.Random(seed)
    foreign = ["ct.name", "okta.app", "github.repo", "gcp.user", "container.id", "k8s.ns.name", "proc.name",
               "evt.dir", "json.value[/a]", "ka.verb", "k8smeta.pod.name", "evt.num", "evt.time"]  # fmt: skip
    conditioned = [index for index, item in enumerate(items) if isinstance(item.get("condition"), str)]
    produced = 0
    while produced < count:
        mutated = copy.deepcopy(items)
        if produced % 4 == 3:
            requirement = next(item for item in mutated if "required_plugin_versions" in item)
            entry = chooser.choice(requirement["required_plugin_versions"])
            major, minor, patch = (int(part) for part in str(entry["version"]).split("."))
            new = chooser.choice([f"{major}.{minor + 1}.0", f"{major + 1}.0.0", f"{major}.{max(minor - 1, 0)}.0",
                                  f"{major}.{minor}.{patch + 1}"])  # fmt: skip
            entry["version"] = new
            produced += 1
            yield Mutation(f"required {entry['name']} {new}", mutated)
            continue
        item = mutated[chooser.choice(conditioned)]
        tokens = TOKEN.findall(item["condition"])
        fields = [index for index, token in enumerate(tokens) if FIELD.match(token)]
        if not fields:
            continue
        index = chooser.choice(fields)
        old, new = tokens[index], chooser.choice(foreign)
        tokens[index] = new
        item["condition"] = "".join(tokens)
        produced += 1
        label = item.get("rule") or item.get("macro") or "item"
        yield Mutation(f"{label}: field {old!r} -> {new!r}", mutated)


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_same_verdict_as_falco_on_mutations_of_a_plugin_rule_set(
    falco_binaries: FalcoBinaries, tmp_path: Path, name: str
) -> None:
    items = YAML(typ="safe").load((RULES / name).read_bytes())
    plugins = PLUGINS_OF[name]
    context = context_for(plugins, falco_binaries)
    generated = [*mutations(items, MUTATIONS[name], seed=23),
                 *plugin_mutations(items, PLUGIN_MUTATIONS // len(MUTATIONS), seed=23)]  # fmt: skip
    disagreements = []
    verdicts = {True: 0, False: 0}
    for index, mutation in enumerate(generated):
        path = tmp_path / f"{index}-{name}"
        path.write_bytes(mutation.document())
        verdict = validate_rules([path], binaries=falco_binaries, plugins=plugins)
        errors = errors_of(ours([(path.name, path.read_bytes())], context))
        verdicts[verdict.successful] += 1
        if verdict.successful != (not errors):
            disagreements.append(f"{mutation.name}\n    Falco: {said(verdict)}\n    ours: "
                                 f"{errors[0] if errors else 'accepted'}")  # fmt: skip
    assert verdicts[True] > 10, f"the mutations must also produce rule sets Falco loads: {verdicts}"
    assert verdicts[False] > len(generated) // 2, f"the mutations must mostly break the rule set: {verdicts}"
    assert not disagreements, f"{len(disagreements)} of {len(generated)} differ:\n" + "\n".join(disagreements)
