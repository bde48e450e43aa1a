"""How many times an agent writes its report for one change, counted in the API server's audit log: once when
Falco confirms the change within the agent's window (real Falco, ``nodriver``), twice when Falco answers late
(a stand-in that shows new files only seconds after they land), once when the agent does not ask Falco."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio
import pytest

from e2e.agent import AgentProcess, falco_pods, rule, rulesfile
from e2e.audit import AuditMark, describe
from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.falco import FalcoBinaries, run_falco
from e2e.falco_standin import FalcoStandIn
from e2e.operator import RunningOperator
from e2e.wait import wait_for
from tests.integration.agent_support import container_plugin, create, entry, patch, report, running_agents

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
NODES = ["node1", "node2", "node3"]
QUIET = "evt.type = open and proc.name = nope"
SLOW_FALCO = 4.0
"""Seconds the stand-in on node2 takes to show new files: later than the agent's window (2 s), earlier than the
agent takes a reload for refused (its nudge after 3 s, then 5 s)."""


def report_writes(mark: AuditMark, namespace: str, agent: AgentProcess) -> list[Json]:
    """The agent's writes of its report's status since ``mark`` (server-side apply: PATCH .../status)."""
    return [write for write in mark.writes_since(namespace=namespace)
            if write["objectRef"].get("resource") == "artifactreports" and write["objectRef"].get("name") == agent.pod
            and write["objectRef"].get("subresource") == "status"]  # fmt: skip


def has_entry(kind: str, name: str, generation: int, state: str) -> Any:
    def accept(body: Json) -> bool:
        found = entry(body, kind, name)
        return found.get("generation") == generation and found.get("state") == state

    return accept


async def wait_report(api: kr8s.asyncio.Api, agent: AgentProcess, accept: Any, what: str) -> Json:
    return await wait_for(partial(report, api, agent), accept, timeout=30, interval=0.1, what=f"{what} ({agent.node})")


async def test_one_report_write_per_change_when_falco_confirms_in_time_two_when_it_answers_late(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    pods = await falco_pods(api, namespace, "falco")
    plugin = container_plugin(falco_binaries)
    plugin["spec"]["selector"] = {"matchLabels": {"kubernetes.io/hostname": "node1"}}  # real Falco's node only
    await create(api, namespace, plugin)
    await create(api, namespace, rulesfile("shared", rule("shared", QUIET)))
    port = free_port()
    slow = FalcoStandIn(tmp_path / "node2" / "rules.d", answer_after=SLOW_FALCO)
    urls = {"node1": f"http://127.0.0.1:{port}", "node2": slow.url}  # node3's agent does not ask Falco
    async with anyio.create_task_group() as group:
        await group.start(slow.run)
        node1 = tmp_path / "node1"
        with run_falco(tmp_path / "falco", node1 / "rules.d", node1 / "config.d", node1 / "plugins",
                       binaries=falco_binaries, web_port=port):  # fmt: skip
            async with running_agents(control_plane, tmp_path, namespace, "falco", pods, NODES, urls) as agents:
                await wait_report(api, agents["node1"], lambda body: has_entry("Rulesfile", "shared", 1, "Loaded")(
                    body) and has_entry("Plugin", "container", 1, "Loaded")(body), "Falco loaded both")  # fmt: skip
                await wait_report(api, agents["node2"], has_entry("Rulesfile", "shared", 1, "Loaded"), "loaded")
                await wait_report(api, agents["node3"], has_entry("Rulesfile", "shared", 1, "Installed"), "installed")

                for generation in (2, 3):  # the second change also follows the reload times Falco showed
                    mark = AuditMark.now(control_plane.state.audit_log)
                    await patch(api, namespace, "Rulesfile", "shared",
                                {"spec": {"inlineRules": rule("shared", f"{QUIET}{generation}")}})  # fmt: skip
                    # Between the window's end and Falco's late answer, a reader sees the change Installed.
                    await wait_report(api, agents["node2"], has_entry("Rulesfile", "shared", generation, "Installed"),
                                      "the change installed, not confirmed yet")  # fmt: skip
                    await wait_report(api, agents["node2"], has_entry("Rulesfile", "shared", generation, "Loaded"),
                                      "the late confirmation")  # fmt: skip
                    await wait_report(api, agents["node1"], has_entry("Rulesfile", "shared", generation, "Loaded"),
                                      "the change loaded")  # fmt: skip
                    await wait_report(api, agents["node3"], has_entry("Rulesfile", "shared", generation, "Installed"),
                                      "the change installed")  # fmt: skip
                    await anyio.sleep(2)  # late writes for this change would land within this
                    counts = {node: report_writes(mark, namespace, agent) for node, agent in agents.items()}
                    assert len(counts["node1"]) == 1, f"confirmed in time: one write; {describe(counts['node1'])}"
                    assert len(counts["node2"]) == 2, f"confirmed late: two writes; {describe(counts['node2'])}"
                    assert len(counts["node3"]) == 1, f"no Falco to wait for: one; {describe(counts['node3'])}"

                # A Plugin change: Falco restarts to load it, and one write says it runs the new configuration.
                mark = AuditMark.now(control_plane.state.audit_log)
                plugin_change = {"spec": {"config": {"initConfig": {"label_max_len": "120"}}}}
                await patch(api, namespace, "Plugin", "container", plugin_change)
                await wait_report(api, agents["node1"], has_entry("Plugin", "container", 2, "Loaded"), "plugin loaded")
                await anyio.sleep(2)
                writes = report_writes(mark, namespace, agents["node1"])
                assert len(writes) == 1, describe(writes)
                assert report_writes(mark, namespace, agents["node2"]) == [], "the Plugin is node1's only"
        group.cancel_scope.cancel()
