"""FalcoRules end to end: application teams' rules, scoped to their namespaces, delivered to the agents of the
Falcos that select those namespaces, guarded, with their own status, and editable only where the team may."""

from __future__ import annotations

import re
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio
import pytest
from ruamel.yaml import YAML

from e2e.agent import falco_pods, rule, rulesfile
from e2e.audit import AuditMark, describe
from e2e.controlplane import ControlPlane, write_token_kubeconfig
from e2e.falco import FalcoBinaries
from e2e.kube import call, request
from e2e.operator import RunningOperator, service_account_token
from e2e.wait import wait_for
from falco_operator.artifacts import parse_rules
from tests.integration.agent_support import (
    ARTIFACT_API,
    MERGE,
    container_plugin,
    create,
    running_agents,
    wait_files,
)

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
FALCO_API = "/apis/instance.falcosecurity.dev/v1alpha1"
TEAM_LABEL = "falco-e2e/team"
GENERATED = re.compile(r"60-03-falco-falcorules-.+-inline\.yaml")
MACROS = "- macro: interactive\n  condition: proc.tty != 0\n"
SEED_09 = (Path(__file__).resolve().parents[2].parent / "shared/examples/seed/09-falcorule-bash.yaml").read_text()


def falco_rule(name: str, condition: str = "proc.name = bash", **spec: Any) -> Json:
    return {
        "apiVersion": "artifact.falcosecurity.dev/v1alpha1",
        "kind": "FalcoRule",
        "metadata": {"name": name},
        "spec": {"rule": name, "condition": condition, "output": f"{name} fired", "priority": "notice", **spec},
    }


async def create_rule(api: kr8s.asyncio.Api, namespace: str, body: Json) -> None:
    await call(api, "POST", f"{ARTIFACT_API}/namespaces/{namespace}/falcorules", body=body)


async def rule_status(api: kr8s.asyncio.Api, namespace: str, name: str) -> dict[str, Json]:
    _, body = await request(api, "GET", f"{ARTIFACT_API}/namespaces/{namespace}/falcorules/{name}")
    return {c["type"]: c for c in ((body or {}).get("status") or {}).get("conditions") or []}


async def label_namespace(api: kr8s.asyncio.Api, name: str, value: str | None) -> None:
    await call(api, "PATCH", f"/api/v1/namespaces/{name}", body={"metadata": {"labels": {TEAM_LABEL: value}}},
               content_type=MERGE)  # fmt: skip


async def make_namespace(api: kr8s.asyncio.Api, name: str, team: str | None) -> None:
    labels = {TEAM_LABEL: team} if team else {}
    await call(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": name, "labels": labels}})


def rule_names(files: dict[str, bytes]) -> list[str]:
    """The rules of every generated file (one per namespace), files in name order."""
    generated = [files[name] for name in sorted(files) if GENERATED.fullmatch(name)]
    return [str(item["rule"]) for data in generated for item in parse_rules(data)]


async def test_falcorules_of_selected_namespaces_reach_the_agents_scoped_and_guarded(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    suffix = namespace[-6:]
    team_a, team_b, other = f"team-a-{suffix}", f"team-b-{suffix}", f"other-{suffix}"
    await make_namespace(api, team_a, "yes")
    await make_namespace(api, team_b, None)
    await make_namespace(api, other, None)
    pods = await falco_pods(api, namespace, "falco")
    await create(api, namespace, container_plugin(falco_binaries))
    await create(api, namespace, rulesfile("macros", MACROS, priority=10))
    selector = {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["default"]}]}  # fmt: skip
    await call(api, "PATCH", f"{FALCO_API}/namespaces/{namespace}/falcos/falco", content_type=MERGE,
               body={"spec": {"falcoRules": {"namespaceSelector": selector}}})  # fmt: skip
    seed_rule = YAML(typ="safe").load(SEED_09)
    seed_rule["metadata"].pop("namespace")
    seed_rule["metadata"]["name"] = f"bash-{suffix}"
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, sorted(pods)) as agents:
        agent = agents["node1"]
        started = time.monotonic()
        await create_rule(api, "default", seed_rule)
        try:
            files = await wait_files(agent, agent.rules_dir, lambda f: "shell_in_container [default]" in
                                     rule_names(f), "the seed's rule in the generated file", timeout=15)  # fmt: skip
            elapsed = time.monotonic() - started
            print(f"FalcoRule to file on the agent: {elapsed:.2f} s")
            assert elapsed < 10
            item = parse_rules(files["60-03-falco-falcorules-default-inline.yaml"])[0]
            assert item["condition"].startswith('k8s.ns.name = "default" and (container.id != host')
            assert item["tags"] == ["namespace:default"]
            status = await wait_for(partial(rule_status, api, "default", f"bash-{suffix}"),
                                    lambda s: s.get("Programmed", {}).get("status") == "True",
                                    what="FalcoRule Programmed")  # fmt: skip
            assert status["Accepted"]["status"] == "True"
        finally:
            await call(api, "DELETE", f"{ARTIFACT_API}/namespaces/default/falcorules/bash-{suffix}")
        await wait_files(agent, agent.rules_dir, lambda f: rule_names(f) == [], "the seed's rule removed")

        # Select by a team label instead: team-a is in, team-b and other are not, until team-b is labelled.
        team_selector = {"matchLabels": {TEAM_LABEL: "yes"}, "matchExpressions": None}  # a merge patch: drop the old
        await call(api, "PATCH", f"{FALCO_API}/namespaces/{namespace}/falcos/falco", content_type=MERGE,
                   body={"spec": {"falcoRules": {"namespaceSelector": team_selector}}})  # fmt: skip
        for team in (team_a, team_b, other):
            await create_rule(api, team, falco_rule("shell"))
        await create_rule(api, team_a, falco_rule("interactive-shell", "interactive and proc.name = bash"))
        await wait_files(agent, agent.rules_dir, lambda f: rule_names(f) == [
            f"interactive-shell [{team_a}]", f"shell [{team_a}]"], "team-a's two rules")  # fmt: skip
        await label_namespace(api, team_b, "yes")
        await wait_files(agent, agent.rules_dir, lambda f: rule_names(f) == [
            f"interactive-shell [{team_a}]", f"shell [{team_a}]", f"shell [{team_b}]"], "team-b added")  # fmt: skip
        await label_namespace(api, team_b, None)
        await wait_files(agent, agent.rules_dir, lambda f: f"shell [{team_b}]" not in rule_names(f), "team-b gone")
        other_status = await rule_status(api, other, "shell")
        assert other_status.get("Programmed", {}).get("reason") in (None, "NotSelected")

        # Guardrails: each refused with a clear message, never in the file; the good rules of team-a stay.
        refused = {
            "typo": falco_rule("typo", "proc.name = bash and (container.id != host"),
            "unknown-macro": falco_rule("unknown-macro", "interactiv and proc.name = bash"),
            "unknown-field": falco_rule("unknown-field", "proc.nme = bash"),
        }
        for body in refused.values():
            await create_rule(api, team_a, body)
        expected = {"typo": ("InvalidCondition", "expected a ')' token"),
                    "unknown-macro": ("UnknownMacro", "define no macro interactiv"),
                    "unknown-field": ("InvalidRule", "proc.nme")}  # fmt: skip
        for name, (reason, fragment) in expected.items():
            status = await wait_for(partial(rule_status, api, team_a, name),
                                    lambda s: s.get("Accepted", {}).get("status") == "False",
                                    what=f"{name} refused")  # fmt: skip
            assert status["Accepted"]["reason"] == reason
            assert fragment in status["Accepted"]["message"]
            assert status["Programmed"]["status"] == "False"
        assert rule_names(agent.files(agent.rules_dir)) == [f"interactive-shell [{team_a}]", f"shell [{team_a}]"]
        generated_path = f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles/falco-falcorules-{team_a}"
        generated = await wait_for(partial(request, api, "GET", generated_path),
                                   lambda answer: any(c["type"] == "Valid" for c in ((answer[1] or {}).get("status")
                                                      or {}).get("conditions") or []), what="Valid")  # fmt: skip
        valid = [c for c in generated[1]["status"]["conditions"] if c["type"] == "Valid"]
        assert valid[0]["status"] == "True", "the generated Rulesfile loads: refused rules never reach it"


async def test_a_cluster_rule_name_cannot_be_taken_by_a_team(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    team = f"team-c-{namespace[-6:]}"
    await make_namespace(api, team, "c")
    body = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco", "metadata": {"name": "falco"},
            "spec": {"falcoRules": {"namespaceSelector": {"matchLabels": {TEAM_LABEL: "c"}}}}}  # fmt: skip
    await call(api, "POST", f"{FALCO_API}/namespaces/{namespace}/falcos", body=body)
    await create(api, namespace, rulesfile("cluster", rule("Terminal shell in container")))
    taken = falco_rule("terminal")
    taken["spec"]["rule"] = "Terminal shell in container"
    await create_rule(api, team, taken)
    status = await wait_for(
        partial(rule_status, api, team, "terminal"),
        lambda s: s.get("Accepted", {}).get("status") == "False",
        what="collision refused",
    )
    assert status["Accepted"]["reason"] == "NameCollision"


async def test_the_editor_role_gives_falcorules_in_one_namespace_and_nothing_else(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """(The operator fixture installs manifests/rbac, where the editor role ships.)"""
    team_b = f"team-b-{namespace[-6:]}"
    await make_namespace(api, team_b, None)
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", body={"metadata": {"name": "dev"}})
    await call(api, "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings", body={
        "metadata": {"name": "dev-falcorules"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "falco-operator-falcorule-editor"},
        "subjects": [{"kind": "ServiceAccount", "name": "dev", "namespace": namespace}]})  # fmt: skip
    kubeconfig = tmp_path / "dev.kubeconfig"
    write_token_kubeconfig(kubeconfig, control_plane.server, control_plane.ca_file,
                           service_account_token(control_plane, namespace, "dev"), namespace)  # fmt: skip
    dev = await kr8s.asyncio.api(kubeconfig=str(kubeconfig), namespace=namespace)
    try:
        await _editor_checks(dev, namespace, team_b)
    finally:
        if dev._session is not None:
            await dev._session.aclose()


async def _editor_checks(dev: kr8s.asyncio.Api, namespace: str, team_b: str) -> None:

    async def answer(path: str, body: Json) -> int:
        return await wait_for(lambda: _status(dev, path, body), lambda code: code != 0, what=path)

    # The RoleBinding takes effect when the API server's RBAC cache has it: the first answers may be 403.
    own = await wait_for(lambda: _status(dev, f"{ARTIFACT_API}/namespaces/{namespace}/falcorules", falco_rule("mine")),
                         lambda code: code == 201, what="a FalcoRule created by the team")  # fmt: skip
    theirs = await answer(f"{ARTIFACT_API}/namespaces/{team_b}/falcorules", falco_rule("theirs"))
    rules = await answer(f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles", rulesfile("sneaky", rule("sneaky")))
    configs = await answer(f"{ARTIFACT_API}/namespaces/{namespace}/configs",
                           {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Config",
                            "metadata": {"name": "c"}, "spec": {"config": "json_output: true"}})  # fmt: skip
    assert (own, theirs, rules, configs) == (201, 403, 403, 403)

    # A FalcoRule has no way to define macros or lists, or to append to or override other rules: such fields are
    # refused by the API server as kubectl sends them (strict field validation), naming the field.
    for field_name, value in (("macro", "x"), ("list", "x"), ("append", True), ("override", {"condition": "append"})):
        body = falco_rule(f"sneaky-{field_name}")
        body["spec"][field_name] = value
        status, refusal = await request(dev, "POST", f"{ARTIFACT_API}/namespaces/{namespace}/falcorules", body=body,
                                       params={"fieldValidation": "Strict"})  # fmt: skip
        assert status in (400, 422), (field_name, status)
        assert f'unknown field "spec.{field_name}"' in str(refusal), refusal


async def _status(api: kr8s.asyncio.Api, path: str, body: Json) -> int:
    status, _ = await request(api, "POST", path, body=body)
    return status


def _observed(obj: Json | None) -> bool:
    """Whether every condition of ``obj`` speaks of its current generation."""
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    generation = ((obj or {}).get("metadata") or {}).get("generation")
    return bool(conditions) and all(c.get("observedGeneration") == generation for c in conditions)


def _mentions(text: str, items: list[Json]) -> bool:
    return any(text in str(item["condition"]) for item in items)


async def test_one_write_per_change_and_none_when_quiet(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    suffix = namespace[-6:]
    teams = [f"w{index}-{suffix}" for index in range(3)]
    for team in teams:
        await make_namespace(api, team, f"w-{suffix}")
    body = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco", "metadata": {"name": "falco"},
            "spec": {"falcoRules": {"namespaceSelector": {"matchLabels": {TEAM_LABEL: f"w-{suffix}"}}}}}  # fmt: skip
    await call(api, "POST", f"{FALCO_API}/namespaces/{namespace}/falcos", body=body)
    for team in teams:
        for index in range(10):
            await create_rule(api, team, falco_rule(f"r{index}", f"proc.name = p{index}"))
    path = f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles/falco-falcorules-{{}}"

    async def generated() -> list[Json]:
        items: list[Json] = []
        for team in teams:
            status, body = await request(api, "GET", path.format(team))
            items += parse_rules(body["spec"]["inlineRules"].encode()) if status == 200 else []
        return items

    await wait_for(generated, lambda items: len(items) == 30, what="30 rules generated, 10 in each team's file")
    await wait_for(partial(rule_status, api, teams[0], "r0"), lambda s: "Accepted" in s, what="statuses written")
    generated_status = partial(request, api, "GET", path.format(teams[1]))

    # Every file's status counts the Falco's three pods before the quiet part begins: a count still held back by
    # the status coalescing (no agent ever reports here, so the change never settles) is written up to a minute
    # later (hence the longer wait), and on a busy machine that minute can end inside the quiet seconds below.
    def counts_three(answer: tuple[int, Json]) -> bool:
        return bool(((answer[1] or {}).get("status") or {}).get("nodes", {}).get("targeted") == 3)

    for team in teams:
        await wait_for(partial(request, api, "GET", path.format(team)), counts_three, timeout=90,
                       what=f"{team}'s file counts 3")  # fmt: skip
    mark = AuditMark.now(control_plane.state.audit_log)
    for index in range(5):
        await call(api, "PATCH", f"{ARTIFACT_API}/namespaces/{teams[1]}/falcorules/r{index}", content_type=MERGE,
                   body={"spec": {"condition": f"proc.name = changed{index}"}})  # fmt: skip
        await wait_for(generated, partial(_mentions, f"changed{index}"), what=f"change {index} generated")
    writes = mark.writes_since(user=operator.username, namespace=namespace)
    config_map_writes = [w for w in writes if (w.get("objectRef") or {}).get("resource") == "configmaps"]
    rulesfile_writes = [w for w in writes if (w.get("objectRef") or {}).get("resource") == "rulesfiles"
                        and not (w.get("objectRef") or {}).get("subresource")]  # fmt: skip
    assert len(rulesfile_writes) == 5, describe(writes)
    assert {w["objectRef"]["name"] for w in rulesfile_writes} == {f"falco-falcorules-{teams[1]}"}, "one team's file"
    assert config_map_writes == [], describe(config_map_writes)

    # Quiet means after what the last change causes has been written: the rules' and the generated file's status
    # for their new generations (written a coalescing window after the change; on a busy machine, later).
    async def settled() -> bool:
        for index in range(5):
            _, rule = await request(api, "GET", f"{ARTIFACT_API}/namespaces/{teams[1]}/falcorules/r{index}")
            if not _observed(rule):
                return False
        _, file = await generated_status()
        return _observed(file)

    await wait_for(settled, bool, what="the statuses of the last generation written")
    quiet = AuditMark.now(control_plane.state.audit_log)
    await anyio.sleep(5)
    idle = [w for team in [namespace, *teams] for w in quiet.writes_since(user=operator.username, namespace=team)]
    assert idle == [], describe(idle)
    assert "is not supported" not in operator.log_path.read_text(), "no kr8s version warning at start"


async def test_a_users_object_named_like_the_generated_one_is_left_alone_and_the_rule_says_why(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    team = f"team-d-{namespace[-6:]}"
    await make_namespace(api, team, "d")
    mine = rulesfile(f"falco-falcorules-{team}", "- list: users_own\n  items: [a]\n", priority=70)
    await create(api, namespace, mine)
    # The file of the single generation before files per namespace: owned by the Falco, so it goes once it is created.
    body = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco", "metadata": {"name": "falco"},
            "spec": {"falcoRules": {"namespaceSelector": {"matchLabels": {TEAM_LABEL: "d"}}}}}  # fmt: skip
    _, falco = await request(api, "POST", f"{FALCO_API}/namespaces/{namespace}/falcos", body=body)
    legacy = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "falco-falcorules", "labels": {"app.kubernetes.io/managed-by": "falco-operator",
                                               "artifact.falcosecurity.dev/for-falco": "falco"},
        "ownerReferences": [{"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco", "name": "falco",
                             "uid": falco["metadata"]["uid"], "controller": True}]},
        "data": {"rules.yaml": "[]\n"}}  # fmt: skip
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body=legacy)
    await create_rule(api, team, falco_rule("shell"))
    status = await wait_for(partial(rule_status, api, team, "shell"),
                            lambda s: s.get("Programmed", {}).get("reason") == "GeneratedNameTaken",
                            what="the name conflict in the FalcoRule's status")  # fmt: skip
    assert f"Rulesfile {namespace}/falco-falcorules-{team}" in status["Programmed"]["message"]
    assert "rename or delete" in status["Programmed"]["message"]
    rulesfile_path = f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles/falco-falcorules-{team}"
    _, kept = await request(api, "GET", rulesfile_path)
    assert kept["spec"]["inlineRules"] == "- list: users_own\n  items: [a]\n"
    assert not kept["metadata"].get("ownerReferences")
    legacy_path = f"/api/v1/namespaces/{namespace}/configmaps/falco-falcorules"
    await wait_for(partial(request, api, "GET", legacy_path), lambda answer: answer[0] == 404,
                   what="the Falco's own ConfigMap of the single file removed")  # fmt: skip

    # The Falco stops selecting namespaces: the operator deletes only what it owns.
    await call(api, "PATCH", f"{FALCO_API}/namespaces/{namespace}/falcos/falco",
               body={"spec": {"falcoRules": None}}, content_type=MERGE)  # fmt: skip
    await wait_for(
        partial(rule_status, api, team, "shell"),
        lambda s: s.get("Programmed", {}).get("reason") == "NotSelected",
        what="rule no longer selected",
    )
    status_code, _ = await request(api, "GET", rulesfile_path)
    assert status_code == 200, "the user's Rulesfile was deleted"


async def test_without_the_container_plugin_the_rules_say_why_they_are_not_loaded(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    team = f"team-e-{namespace[-6:]}"
    await make_namespace(api, team, "e")
    pods = await falco_pods(api, namespace, "falco")
    await call(api, "PATCH", f"{FALCO_API}/namespaces/{namespace}/falcos/falco", content_type=MERGE,
               body={"spec": {"falcoRules": {"namespaceSelector": {"matchLabels": {TEAM_LABEL: "e"}}}}})  # fmt: skip
    await create_rule(api, team, falco_rule("shell"))
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, sorted(pods)):
        # The generated file scopes the rule with k8s.ns.name, a container-plugin field: every agent withholds it.
        status = await wait_for(partial(rule_status, api, team, "shell"),
                                lambda s: s.get("Programmed", {}).get("reason") == "FileRefused",
                                what="the FalcoRule saying why it is not loaded")  # fmt: skip
    assert status["Accepted"]["status"] == "True"
    assert "the agent withholds it on node" in status["Programmed"]["message"]
    assert "container" in status["Programmed"]["message"]
