"""The agent's half of a staged rollout on the real control plane, with real Falco (nodriver) behind each agent.

The operator of this test module does not advance rollouts: the test writes ``status.rollout`` (a merge patch of
the status subresource) and the snapshot ConfigMap as the operator does (docs/rollout.md), and grants the Falco's
ServiceAccount read access to the snapshot with a Role of its own. Two agents: ``node1`` is the step's node, ``node2``
stays outside it. Falco ``nodriver`` emits a synthetic event every 100 ms, so a rule ``evt.num >= 0`` matches ten
times a second: the flooding candidate.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio
import pytest

from e2e.agent import AgentProcess, falco_pods, rulesfile
from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.falco import FalcoBinaries, RunningFalco, run_falco
from e2e.kube import call, request
from e2e.operator import RunningOperator
from e2e.wait import wait_for
from tests.integration.agent_support import (
    ARTIFACT_API,
    MERGE,
    create,
    entry,
    patch,
    report,
    running_agents,
    wait_entry,
)

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
SNAPSHOT = "web-rulesfile-stable"
FILE = "50-03-web-inline.yaml"
ROLLOUT = {"steps": [{"nodes": 1}], "analysis": {"duration": "10s", "maxRuleRate": 1}}


def rules(name: str, condition: str) -> str:
    return f"- rule: {name}\n  desc: {name}\n  condition: {condition}\n  output: {name} %evt.num\n  priority: INFO\n"


V1 = rules("quiet v1", "evt.num < 0")
V2 = rules("quiet v2", "evt.num < 0")
FLOOD = rules("every event", "evt.num >= 0")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def write_snapshot(api: kr8s.asyncio.Api, namespace: str, generation: int, inline: str) -> None:
    """The stable generation as the operator keeps it (an inline source: nothing to pin)."""
    stable = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
              "metadata": {"name": "web", "generation": generation},
              "spec": {"inlineRules": inline, "rollout": ROLLOUT}}  # fmt: skip
    body = {"metadata": {"name": SNAPSHOT, "labels": {"artifact.falcosecurity.dev/snapshot-of": "Rulesfile.web"}},
            "data": {"artifact.json": json.dumps(stable)}}  # fmt: skip
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    status, _ = await request(api, "PUT", f"{path}/{SNAPSHOT}", body=body)
    if status == 404:
        await call(api, "POST", path, body=body)


async def set_rollout(api: kr8s.asyncio.Api, namespace: str, rollout: Json) -> None:
    path = f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles/web/status"
    await call(api, "PATCH", path, body={"status": {"rollout": rollout}}, content_type=MERGE)


async def grant_snapshot(api: kr8s.asyncio.Api, namespace: str) -> None:
    """What the operator's Role for the Falco gives its agents for a snapshot its artifacts name."""
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    read = {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [SNAPSHOT],
            "verbs": ["get", "list", "watch"]}  # fmt: skip
    role = {"metadata": {"name": "falco-snapshots"}, "rules": [read]}
    binding = {"metadata": {"name": "falco-snapshots"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "falco-snapshots"},
               "subjects": [{"kind": "ServiceAccount", "name": "falco", "namespace": namespace}]}  # fmt: skip
    await call(api, "POST", f"{rbac}/roles", body=role)
    await call(api, "POST", f"{rbac}/rolebindings", body=binding)


async def loads(falco: RunningFalco, text: str, timeout: float = 30) -> None:
    await falco.wait_rules({FILE: sha(text)}, timeout=timeout)


async def never_loads(falco: RunningFalco, text: str, within: float) -> None:
    with anyio.move_on_after(within):
        while True:
            assert (await falco.rules_hashes()).get(FILE) != sha(text), "a node outside the step loaded the candidate"
            await anyio.sleep(0.2)


def rule_matches(metrics: str, rule: str) -> float:
    series = "falcosecurity_falco_rules_matches_total{"
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith(series) and f'rule_name="{rule}"' in line)  # fmt: skip


def writes(agent: AgentProcess) -> float:
    return agent.metric("falco_artifact_agent_report_writes_total")


def rules_swaps(agent: AgentProcess) -> float:
    return agent.metric("falco_artifact_agent_generation_swaps_total", directory="rules")


async def test_nodes_outside_the_step_keep_the_snapshot_and_the_step_node_reports_its_verdict(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    pods = await falco_pods(api, namespace, "falco")
    await grant_snapshot(api, namespace)
    await create(api, namespace, rulesfile("web", V1, rollout=ROLLOUT))
    ports = {node: free_port() for node in ("node1", "node2")}
    urls = {node: f"http://127.0.0.1:{port}" for node, port in ports.items()}
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1", "node2"], urls) as agents:
        with ExitStack() as stack:
            falcos = {node: stack.enter_context(run_falco(tmp_path / f"falco-{node}", agent.rules_dir,
                                                          agent.config_dir, agent.plugins_dir, binaries=falco_binaries,
                                                          web_port=ports[node]))
                      for node, agent in agents.items()}  # fmt: skip
            canary, other = agents["node1"], agents["node2"]
            # Generation 1, the first with a rollout, goes everywhere; the operator then snapshots it.
            for node, agent in agents.items():
                await loads(falcos[node], V1)
                await wait_entry(api, agent, "Rulesfile", "web", lambda e: e.get("state") == "Loaded", "generation 1")
            await write_snapshot(api, namespace, 1, V1)
            await set_rollout(api, namespace, {"phase": "Succeeded", "stableGeneration": 1, "snapshot": SNAPSHOT})

            # An edit the operator has not seen yet reaches no node.
            await patch(api, namespace, "Rulesfile", "web", {"spec": {"inlineRules": V2}})
            await never_loads(falcos["node1"], V2, within=3)
            assert entry(await report(api, canary), "Rulesfile", "web")["generation"] == 1

            # Step 1: only node1 runs generation 2, under watch; node2 keeps generation 1 from the snapshot.
            step = {"phase": "Progressing", "stableGeneration": 1, "candidateGeneration": 2, "step": 1, "steps": 1,
                    "nodes": ["node1"], "snapshot": SNAPSHOT}  # fmt: skip
            await set_rollout(api, namespace, step)
            await loads(falcos["node1"], V2)
            loaded = await wait_entry(api, canary, "Rulesfile", "web",
                                      lambda e: e.get("state") == "Loaded" and e.get("generation") == 2,
                                      "candidate loaded")  # fmt: skip
            assert "analysis" not in loaded
            writes_before = writes(canary)
            passed = await wait_for(partial(report, api, canary),
                                    lambda body: "analysis" in entry(body, "Rulesfile", "web"), timeout=40,
                                    what="the verdict on generation 2")  # fmt: skip
            verdict = entry(passed, "Rulesfile", "web")["analysis"]
            assert (verdict["generation"], verdict["result"]) == (2, "Passed"), verdict
            assert 10 <= verdict["seconds"] < 20
            assert writes(canary) == writes_before + 1, "one report write for the verdict, none while watching"
            outside = entry(await report(api, other), "Rulesfile", "web")
            assert (outside["generation"], outside["state"], outside["sha256"]) == (1, "Loaded", sha(V1))
            assert "analysis" not in outside
            assert (await falcos["node2"].rules_hashes())[FILE] == sha(V1)

            # An agent restarted meanwhile keeps the verdict its report holds: it neither drops it nor watches again.
            canary.kill()
            canary.start()
            await canary.wait_ready()
            with anyio.move_on_after(5):
                while True:
                    kept = entry(await report(api, canary), "Rulesfile", "web")
                    assert kept.get("analysis") == verdict, kept
                    await anyio.sleep(0.2)

            # Promoted: generation 2 is stable everywhere.
            await write_snapshot(api, namespace, 2, V2)
            await set_rollout(api, namespace, {"phase": "Succeeded", "stableGeneration": 2, "snapshot": SNAPSHOT})
            await loads(falcos["node2"], V2)
            await wait_entry(api, canary, "Rulesfile", "web", lambda e: e.get("generation") == 2 and "analysis"
                             not in e, "the verdict leaves with the rollout")  # fmt: skip

            # A flooding candidate: node1 fails it on the rule rate, with the figures; node2 never loads it.
            await patch(api, namespace, "Rulesfile", "web", {"spec": {"inlineRules": FLOOD}})
            await set_rollout(api, namespace, {**step, "stableGeneration": 2, "candidateGeneration": 3})
            await loads(falcos["node1"], FLOOD)
            started = anyio.current_time()
            failed_report = await wait_for(partial(report, api, canary),
                                           lambda body: "analysis" in entry(body, "Rulesfile", "web"), timeout=30,
                                           what="the verdict on generation 3")  # fmt: skip
            waited = anyio.current_time() - started
            verdict = entry(failed_report, "Rulesfile", "web")["analysis"]
            assert (verdict["generation"], verdict["result"], verdict["check"]) == (3, "Failed", "RuleRate"), verdict
            assert verdict["message"].startswith('rule "every event" matched '), verdict
            rate = float(verdict["message"].split("matched ")[1].split("/s")[0])
            assert 8 <= rate <= 12, verdict
            assert "(limit 1/s)" in verdict["message"]
            assert waited < 16, f"the flood was caught after {waited:.1f}s"
            assert (await falcos["node2"].rules_hashes())[FILE] == sha(V2)
            assert rule_matches(await falcos["node2"].metrics(), "every event") == 0

            # Halted: node1 goes back to the stable generation in one swap; the verdict leaves its report.
            swaps, reloads = rules_swaps(canary), falcos["node1"].reload_count()
            halted = {"phase": "Halted", "stableGeneration": 2, "candidateGeneration": 3, "nodes": None,
                      "snapshot": SNAPSHOT, "message": "node1: RuleRate: " + verdict["message"]}  # fmt: skip
            await set_rollout(api, namespace, halted)
            await loads(falcos["node1"], V2)
            back = await wait_entry(api, canary, "Rulesfile", "web",
                                    lambda e: e.get("generation") == 2 and e.get("state") == "Loaded",
                                    "back to generation 2")  # fmt: skip
            assert "analysis" not in back
            await anyio.sleep(2)
            assert rules_swaps(canary) == swaps + 1, "one swap back"
            assert falcos["node1"].reload_count() == reloads + 1
            assert falcos["node1"].reload_failures() == falcos["node2"].reload_failures() == 0
