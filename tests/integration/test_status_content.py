"""The artifact status matches the agents' reports by content on the real control plane: after a ConfigMap edit
(the artifact's generation stays), an agent that did not write the new content (here: stopped) is not counted as
installed, and the status names it."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from e2e.agent import falco_pods, rule
from e2e.controlplane import ControlPlane
from e2e.kube import call, request
from e2e.wait import wait_for
from falco_operator.artifacts import sha256_hex
from tests.integration.agent_support import ARTIFACT_API, create, running_agents, wait_entry

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds", "operator")]
NODES = ["node1", "node2", "node3"]
QUIET = "evt.type = open and proc.name = nope"


async def rulesfile_status(api: kr8s.asyncio.Api, namespace: str, name: str) -> Json:
    answer, body = await request(api, "GET", f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles/{name}")
    return dict(body.get("status") or {}) if answer == 200 and isinstance(body, dict) else {}


def programmed(status: Json) -> tuple[str, str, str]:
    found: Json = next((c for c in status.get("conditions") or [] if c["type"] == "Programmed"), {})
    return str(found.get("status")), str(found.get("reason")), str(found.get("message"))


async def test_a_configmap_edit_an_agent_did_not_write_keeps_the_rulesfile_from_being_programmed(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    pods = await falco_pods(api, namespace, "falco")
    first, edited = rule("first", QUIET), rule("edited", QUIET)
    config_maps = f"/api/v1/namespaces/{namespace}/configmaps"
    await call(api, "POST", config_maps, body={"metadata": {"name": "team-rules"}, "data": {"rules.yaml": first}})
    body = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
            "metadata": {"name": "team"}, "spec": {"configMapRef": {"name": "team-rules"}}}  # fmt: skip
    await create(api, namespace, body)
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, NODES) as agents:
        installed = await wait_for(partial(rulesfile_status, api, namespace, "team"),
                                   lambda status: programmed(status)[0] == "True", what="Programmed on 3")  # fmt: skip
        assert installed["nodes"]["summary"] == "3/3"
        for agent in agents.values():
            reported = await wait_entry(api, agent, "Rulesfile", "team", lambda e: e.get("state") == "Installed", "")
            assert reported["configMapSha256"] == sha256_hex(first.encode())

        agents["node3"].stop()  # its report stays, saying Installed for generation 1
        await call(api, "PATCH", f"{config_maps}/team-rules", body={"data": {"rules.yaml": edited}},
                   content_type="application/merge-patch+json")  # fmt: skip
        for node in ("node1", "node2"):
            await wait_entry(api, agents[node], "Rulesfile", "team",
                             lambda e: e.get("configMapSha256") == sha256_hex(edited.encode()), "edit")  # fmt: skip
        stale = await wait_for(partial(rulesfile_status, api, namespace, "team"),
                               lambda status: programmed(status)[0] == "False", what="not Programmed")  # fmt: skip
        assert programmed(stale) == ("False", "Pending", "2/3 agents installed it, Falco loaded it on 0; waiting for "
                                     "node3 (node3: an older content of the ConfigMap)")  # fmt: skip
        assert stale["nodes"] == {"targeted": 3, "installed": 2, "loaded": 0, "failed": 0, "summary": "2/3"}
        assert stale["observedGeneration"] == 1
