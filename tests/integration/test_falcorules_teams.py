"""Two teams' FalcoRules, one team's broken (issue 23, cases 5 and 10), with the cluster's rules from an OCI
registry (which the operator does not read) and real Falco on node1: the other team's rules, and the broken team's
good rule, reach Falco; each broken rule is Accepted=False with Falco's reason, never "waiting for the agents"."""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from e2e.agent import falco_pods, rulesfile
from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.falco import FalcoBinaries, run_falco, validate_rules
from e2e.kube import call
from e2e.oci_artifacts import push_rules
from e2e.operator import RunningOperator
from e2e.registry import Registry
from e2e.wait import wait_for
from falco_operator.api import FalcoRule
from falco_operator.artifacts.yamldoc import dump_yaml
from falco_operator.falcorules.render import rule_item
from tests.integration.agent_support import ARTIFACT_API, MERGE, container_plugin, create, running_agents, wait_files
from tests.integration.test_falcorules import (
    FALCO_API,
    TEAM_LABEL,
    create_rule,
    falco_rule,
    make_namespace,
    rule_names,
    rule_status,
)
from tests.integration.test_oci_agent import agent_args, create_secret, docker_config

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
NODES = ["node1", "node2", "node3"]
CLUSTER_RULES = (b"- list: shell_binaries\n  items: [ash, bash, sh]\n"
                 b"- macro: spawned_process\n  condition: evt.type in (execve, execveat)\n")  # fmt: skip


def falcos_reason(falco: FalcoBinaries, workdir: Path, body: Json, namespace: str) -> str:
    """What real Falco says of the rule as the operator generates it, after the cluster's rules."""
    generated = FalcoRule.model_validate({"metadata": {"name": body["metadata"]["name"], "namespace": namespace},
                                          "spec": body["spec"]})  # fmt: skip
    cluster, team = workdir / "10-cluster.yaml", workdir / "60-team.yaml"
    cluster.write_bytes(CLUSTER_RULES)
    team.write_bytes(dump_yaml([rule_item(generated, namespace)]))
    verdict = validate_rules([cluster, team], binaries=falco)
    assert not verdict.successful
    return str(verdict.errors()[0]["message"])


async def test_one_teams_broken_falcorules_never_block_the_other_team_or_its_own_good_rule(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    oci_registry: Registry, falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    suffix = namespace[-6:]
    team_a, team_b = f"team-a-{suffix}", f"team-b-{suffix}"
    for team in (team_a, team_b):
        await make_namespace(api, team, f"teams-{suffix}")
    repository = f"cluster-rules-{suffix}"
    push_rules(oci_registry, repository, "1", CLUSTER_RULES)
    await create_secret(api, namespace, "registry", docker_config(oci_registry), type_="kubernetes.io/dockerconfigjson")
    pods = await falco_pods(api, namespace, "falco")
    await create(api, namespace, container_plugin(falco_binaries))
    oci = {"reference": f"{oci_registry.host}/{repository}:1", "pullSecret": {"secretName": "registry"}}
    await create(api, namespace, rulesfile("cluster", priority=10, ociArtifact=oci))
    selector = {"matchLabels": {TEAM_LABEL: f"teams-{suffix}"}}
    await call(api, "PATCH", f"{FALCO_API}/namespaces/{namespace}/falcos/falco", content_type=MERGE,
               body={"spec": {"falcoRules": {"namespaceSelector": selector}}})  # fmt: skip
    listed = falco_rule("listed", "spawned_process and proc.name = shell_binaries")  # case 5: a list as a value
    broken = {
        "listed": listed,
        "regex": falco_rule("regex", 'spawned_process and proc.name regex "a(b"'),  # case 10
        "lower": falco_rule("lower", "spawned_process and tolower(proc.pid) = 1"),  # case 10
    }
    port = free_port()
    urls = {"node1": f"http://127.0.0.1:{port}"}
    node1 = tmp_path / "node1"
    with run_falco(tmp_path / "falco", node1 / "rules.d", node1 / "config.d", node1 / "plugins",
                   binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
        async with running_agents(control_plane, tmp_path, namespace, "falco", pods, NODES, urls,
                                  agent_args(oci_registry)) as agents:  # fmt: skip
            agent = agents["node1"]
            await wait_files(agent, agent.rules_dir, lambda f: "10-01-cluster-oci.yaml" in f, "the cluster's rules",
                             timeout=30)  # fmt: skip
            await create_rule(api, team_a, falco_rule("shell", "spawned_process and proc.name in (shell_binaries)"))
            await create_rule(api, team_b, falco_rule("fine", "spawned_process and proc.name = zsh"))
            for body in broken.values():
                await create_rule(api, team_b, body)

            falco_says = falcos_reason(falco_binaries, tmp_path, listed, team_b)
            expected = {"lower": ("InvalidRule", "tolower() cannot be applied to proc.pid"),
                        "regex": ("InvalidRule", "invalid regular expression 'a(b': missing )"),
                        "listed": ("RefusedByAgent", falco_says)}  # fmt: skip
            for name, (reason, words) in expected.items():
                status = await wait_for(partial(rule_status, api, team_b, name),
                                        lambda s: s.get("Accepted", {}).get("status") == "False", timeout=60,
                                        what=f"{name} refused")  # fmt: skip
                assert status["Accepted"]["reason"] == reason, status
                assert words in status["Accepted"]["message"], (words, status)
                assert status["Programmed"]["reason"] == "NotAccepted"
            listed_message = (await rule_status(api, team_b, "listed"))["Accepted"]["message"]
            assert f"rule 'listed [{team_b}]'" in listed_message
            assert "line " in listed_message

            # Both teams' good rules are on disk and loaded by real Falco, the refused ones nowhere.
            files = await wait_files(agent, agent.rules_dir, lambda f: rule_names(f) == [
                f"shell [{team_a}]", f"fine [{team_b}]"], "both teams' good rules", timeout=60)  # fmt: skip
            generated = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
            await falco.wait_rules(generated, timeout=60)
            for team, name in ((team_a, "shell"), (team_b, "fine")):
                status = await wait_for(partial(rule_status, api, team, name),
                                        lambda s: s.get("Programmed", {}).get("status") == "True", timeout=60,
                                        what=f"{name} Programmed")  # fmt: skip
                assert status["Accepted"]["status"] == "True"

            # Fixed, the rule is judged again and joins its team's file.
            fixed = {"spec": {"condition": "spawned_process and proc.name in (shell_binaries)"}}
            await call(api, "PATCH", f"{ARTIFACT_API}/namespaces/{team_b}/falcorules/listed", content_type=MERGE,
                       body=fixed)  # fmt: skip
            await wait_files(agent, agent.rules_dir, lambda f: f"listed [{team_b}]" in rule_names(f), "the fixed rule",
                             timeout=60)  # fmt: skip
            status = await wait_for(partial(rule_status, api, team_b, "listed"),
                                    lambda s: s.get("Programmed", {}).get("status") == "True", timeout=60,
                                    what="the fixed rule Programmed")  # fmt: skip
            assert status["Accepted"]["status"] == "True"
