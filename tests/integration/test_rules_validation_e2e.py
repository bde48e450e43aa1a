"""Rules validation end to end: agents refuse a rule set Falco would refuse (an undefined macro) and keep the
previous files; the Rulesfile shows Valid=False, through inline and ConfigMap sources; the operator marks an
inline condition that cannot parse Valid=False on its own, before any agent runs."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from e2e.agent import falco_pods, rule, rulesfile
from e2e.controlplane import ControlPlane
from e2e.kube import call, request
from e2e.operator import RunningOperator
from e2e.wait import wait_for
from tests.integration.agent_support import ARTIFACT_API, MERGE, create, patch, running_agents, wait_entry, wait_files

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
MACROS = "- macro: interactive_shell\n  condition: proc.name in (bash, sh, zsh)\n"


async def valid_condition(api: kr8s.asyncio.Api, namespace: str, name: str) -> Json:
    _, body = await request(api, "GET", f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles/{name}")
    conditions = ((body or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Valid"), {})


async def test_an_undefined_macro_is_refused_by_agents_and_shown_as_valid_false(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    pods = await falco_pods(api, namespace, "falco")
    await create(api, namespace, rulesfile("macros", MACROS, priority=10))
    good = rule("shell_seen", "evt.type = execve and interactive_shell")
    await create(api, namespace, rulesfile("inline-rules", good))
    await call(
        api,
        "POST",
        f"/api/v1/namespaces/{namespace}/configmaps",
        body={"metadata": {"name": "team-rules"}, "data": {"rules.yaml": good.replace("shell_seen", "cm")}},
    )
    await create(api, namespace, rulesfile("cm-rules", None, configMapRef={"name": "team-rules"}))
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"]) as agents:
        agent = agents["node1"]
        names = {"10-03-macros-inline.yaml", "50-03-inline-rules-inline.yaml", "50-02-cm-rules-configmap.yaml"}
        before = await wait_files(agent, agent.rules_dir, lambda files: set(files) == names, "three rules files")

        broken = rule("shell_seen", "evt.type = execve and interactive_shel")
        await patch(api, namespace, "Rulesfile", "inline-rules", {"spec": {"inlineRules": broken}})
        second = lambda e: (e.get("generation"), e.get("state")) == (2, "Invalid")  # noqa: E731
        refused = await wait_entry(api, agent, "Rulesfile", "inline-rules", second, "Invalid")
        assert refused["reason"] == "InvalidRules"
        assert "undefined macro 'interactive_shel'" in refused["message"]
        assert "50-03-inline-rules-inline.yaml" in refused["message"]
        assert refused["message"].endswith("the last good files stay")
        valid = await wait_for(partial(valid_condition, api, namespace, "inline-rules"),
                               lambda c: c.get("status") == "False", what="Valid=False (inline)")  # fmt: skip
        assert "undefined macro 'interactive_shel'" in valid["message"]

        await call(api, "PATCH", f"/api/v1/namespaces/{namespace}/configmaps/team-rules", content_type=MERGE,
                   body={"data": {"rules.yaml": broken.replace("shell_seen", "cm")}})  # fmt: skip
        await wait_entry(api, agent, "Rulesfile", "cm-rules", lambda e: e.get("state") == "Invalid", "Invalid (cm)")
        valid = await wait_for(partial(valid_condition, api, namespace, "cm-rules"),
                               lambda c: c.get("status") == "False", what="Valid=False (ConfigMap)")  # fmt: skip
        assert "undefined macro 'interactive_shel'" in valid["message"]
        assert agent.files(agent.rules_dir) == before, "the previous files stay"

        # Fixing the macro's name recovers the inline one.
        await patch(api, namespace, "Rulesfile", "inline-rules", {"spec": {"inlineRules": good.replace("seen", "ok")}})
        await wait_entry(api, agent, "Rulesfile", "inline-rules", lambda e: e.get("state") == "Installed", "fixed")


async def test_the_operator_marks_a_condition_that_cannot_parse_before_any_agent(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    await create(api, namespace, rulesfile("typo", rule("typo", "evt.type = execve and (proc.name = bash")))
    valid = await wait_for(partial(valid_condition, api, namespace, "typo"), lambda c: c.get("status") == "False",
                           what="Valid=False without agents")  # fmt: skip
    assert "expected a ')' token" in valid["message"]
    assert "50-03-typo-inline.yaml line 3, column 53" in valid["message"]

    await call(
        api,
        "POST",
        f"/api/v1/namespaces/{namespace}/configmaps",
        body={"metadata": {"name": "typo-cm"}, "data": {"rules.yaml": rule("cm", "evt.type in (a, b")}},
    )
    await create(api, namespace, rulesfile("typo-cm", None, configMapRef={"name": "typo-cm"}))
    valid = await wait_for(partial(valid_condition, api, namespace, "typo-cm"), lambda c: c.get("status") == "False",
                           what="Valid=False for ConfigMap rules without agents")  # fmt: skip
    assert valid["message"].startswith("configmap source: 50-02-typo-cm-configmap.yaml line 3, column 31:")
