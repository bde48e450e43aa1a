"""Artifact status on the real control plane: the operator alone writes it, from the agents' reports, and
"loaded" means Falco said so (real Falco on node1, stand-ins on the other nodes)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio
import pytest

from e2e.agent import falco_pods, rule, rulesfile
from e2e.audit import AuditMark, describe
from e2e.controlplane import ControlPlane, write_token_kubeconfig
from e2e.controlplane.cluster import free_port
from e2e.falco import FalcoBinaries, run_falco
from e2e.falco_standin import FalcoStandIn
from e2e.kube import request
from e2e.metrics import scrape, value
from e2e.operator import RunningOperator, service_account_token
from e2e.wait import wait_for
from falco_operator.instance.status import ARTIFACT_COUNTS_HOLD
from tests.integration.agent_support import ARTIFACT_API, MERGE, create, patch, running_agents

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
NODES = ["node1", "node2", "node3"]


async def rulesfile_obj(api: kr8s.asyncio.Api, namespace: str, name: str) -> Json:
    status, body = await request(api, "GET", f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles/{name}")
    return body if status == 200 and isinstance(body, dict) else {}


def condition(obj: Json, kind: str) -> Json:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return dict(item)
    return {}


async def wait_status(api: kr8s.asyncio.Api, namespace: str, name: str, accept: Any, what: str) -> Json:
    return await wait_for(partial(rulesfile_obj, api, namespace, name), accept, timeout=30, what=what)


def programmed(generation: int, loaded: int) -> Any:
    def accept(obj: Json) -> bool:
        status = obj.get("status") or {}
        return (
            condition(obj, "Programmed").get("status") == "True"
            and status.get("observedGeneration") == generation
            and (status.get("nodes") or {}).get("loaded") == loaded
        )

    return accept


async def falco_summary(api: kr8s.asyncio.Api, namespace: str) -> Json:
    answer, body = await request(
        api, "GET", f"/apis/instance.falcosecurity.dev/v1alpha1/namespaces/{namespace}/falcos/falco"
    )
    return ((body.get("status") or {}).get("artifacts") or {}) if answer == 200 and isinstance(body, dict) else {}


def has(kind: str, field: str, value: str) -> Any:
    return lambda obj: condition(obj, kind).get(field) == value


def is_status_write(write: Json, name: str) -> bool:
    ref = write["objectRef"]
    return bool(ref.get("resource") == "rulesfiles" and ref.get("name") == name and ref.get("subresource") == "status")


@asynccontextmanager
async def falcos_for(
    tmp_path: Path, agents_dirs: dict[str, Path], binaries: FalcoBinaries
) -> AsyncIterator[dict[str, str]]:
    """Real Falco for node1's agent, stand-ins for the others; yields each node's Falco URL."""
    port = free_port()
    urls = {"node1": f"http://127.0.0.1:{port}"}
    stand_ins = {
        node: FalcoStandIn(directory / "rules.d") for node, directory in agents_dirs.items() if node != "node1"
    }
    urls |= {node: stand_in.url for node, stand_in in stand_ins.items()}
    node1 = agents_dirs["node1"]
    async with anyio.create_task_group() as group:
        for stand_in in stand_ins.values():
            await group.start(stand_in.run)
        with run_falco(tmp_path / "falco", node1 / "rules.d", node1 / "config.d", node1 / "plugins",
                       binaries=binaries, web_port=port):  # fmt: skip
            yield urls
        group.cancel_scope.cancel()


async def test_status_follows_the_agents_with_few_writes_and_names_what_falco_refused(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    pods = await falco_pods(api, namespace, "falco")
    quiet = "evt.type = open and proc.name = nope"
    await create(api, namespace, rulesfile("shared", rule("shared", quiet)))
    dirs = {node: tmp_path / node for node in NODES}
    async with (
        falcos_for(tmp_path, dirs, falco_binaries) as urls,
        running_agents(control_plane, tmp_path, namespace, "falco", pods, NODES, urls) as agents,
    ):
        first = await wait_status(api, namespace, "shared", programmed(1, 3), "Programmed, loaded on 3")
        assert first["status"]["nodes"] == {"targeted": 3, "installed": 3, "loaded": 3, "failed": 0, "summary": "3/3"}
        assert not first["metadata"].get("finalizers"), "no per-node finalizers"
        await wait_for(partial(falco_summary, api, namespace), lambda summary: summary == {
            "selected": 1, "programmed": 1, "failed": 0}, what="the Falco's artifact summary")  # fmt: skip
        samples = await scrape(operator.metrics_url)
        assert value(samples, "falco_operator_artifacts", kind="Rulesfile", condition="Programmed", status="True") == 1
        # Cluster-wide: reports of earlier tests' namespaces may still be on their way out.
        assert value(samples, "falco_operator_artifact_reports") >= 3

        mark = AuditMark.now(control_plane.state.audit_log)
        started = time.monotonic()
        await patch(api, namespace, "Rulesfile", "shared", {"spec": {"inlineRules": rule("shared", quiet + "2")}})
        await wait_status(api, namespace, "shared", programmed(2, 3), "generation 2 Programmed and loaded")
        settled_in = time.monotonic() - started
        await anyio.sleep(3)  # late writes for this change would land within this
        writes = mark.writes_since(namespace=namespace)
        status_writes = [w for w in writes if is_status_write(w, "shared")]
        assert len(status_writes) <= 3, describe(status_writes)
        assert {w["user"]["username"] for w in status_writes} == {operator.username}, "one writer"
        if settled_in < ARTIFACT_COUNTS_HOLD - 1:
            # The Falco's programmed count dipped and came back within the hold: its status was not written, so
            # the agents watching it were not woken for it.
            falco_writes = [w for w in writes if w["objectRef"].get("resource") == "falcos"]
            assert falco_writes == [], describe(falco_writes)

        # An invalid change: the operator sees it at once; every node keeps generation 2's file.
        before = {node: agent.files(agent.rules_dir) for node, agent in agents.items()}
        await patch(api, namespace, "Rulesfile", "shared", {"spec": {"priority": 40, "inlineRules": "- rule: x\n"}})
        invalid = await wait_status(api, namespace, "shared", has("Valid", "status", "False"), "Valid=False")
        assert "missing desc, condition, output, priority" in condition(invalid, "Valid")["message"]
        await wait_status(api, namespace, "shared", has("Programmed", "reason", "Failed"), "Programmed=False, Failed")
        await wait_for(partial(falco_summary, api, namespace), lambda summary: summary == {
            "selected": 1, "programmed": 0, "failed": 1}, what="the failure in the Falco's summary")  # fmt: skip
        assert {node: agent.files(agent.rules_dir) for node, agent in agents.items()} == before

        # Valid to the agents, refused by node1's real Falco (an unknown rule matching strategy): Refused there,
        # never programmed; the stand-ins of node2 and node3 load it.
        matching = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Config",
                    "metadata": {"name": "matching"}, "spec": {"config": "rule_matching: bogus\n"}}  # fmt: skip
        await create(api, namespace, matching)
        await create(api, namespace, rulesfile("audit", rule("audit", quiet)))
        refused = await wait_status(api, namespace, "audit", has("Programmed", "reason", "Refused"), "audit Refused")
        assert condition(refused, "Programmed")["status"] == "False"
        assert "Falco refused it on node1: Falco refused the reload that would load" in condition(
            refused, "Programmed")["message"]  # fmt: skip
        assert refused["status"]["nodes"] == {"targeted": 3, "installed": 2, "loaded": 2, "failed": 1, "summary": "2/3"}
        await request(api, "DELETE", f"{ARTIFACT_API}/namespaces/{namespace}/configs/matching")
        await wait_status(api, namespace, "audit", programmed(1, 3), "audit loaded on 3 once the Config is gone")

        # A deleted agent pod: its report goes with it; the DaemonSet's new pod has no agent yet.
        gone = agents["node3"]
        gone.stop()
        await request(api, "DELETE", f"/api/v1/namespaces/{namespace}/pods/{gone.pod}")
        report_path = f"{ARTIFACT_API}/namespaces/{namespace}/artifactreports/{gone.pod}"
        await wait_for(partial(request, api, "GET", report_path), lambda answer: answer[0] == 404,
                       what="report garbage-collected")  # fmt: skip
        waiting = await wait_status(api, namespace, "audit", has("Programmed", "reason", "Pending"), "Pending")
        assert "waiting for node3" in condition(waiting, "Programmed")["message"]


async def test_no_change_for_a_minute_means_no_status_writes(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    pods = await falco_pods(api, namespace, "falco")
    for index in range(5):
        await create(api, namespace, rulesfile(f"r{index}", rule(f"r{index}")))
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, NODES):
        for index in range(5):
            await wait_status(api, namespace, f"r{index}", programmed(1, 0), f"r{index} Programmed")
        await anyio.sleep(2)
        mark = AuditMark.now(control_plane.state.audit_log)
        await anyio.sleep(60)
        writes = mark.writes_since(namespace=namespace)
        assert writes == [], describe(writes)


async def test_an_agent_token_may_write_only_its_own_pods_report(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    pods = await falco_pods(api, namespace, "falco")
    own, other = (pods[node]["metadata"] for node in ("node1", "node2"))
    token = service_account_token(control_plane, namespace, "falco", pod=(own["name"], own["uid"]))
    kubeconfig = tmp_path / "agent.kubeconfig"
    write_token_kubeconfig(kubeconfig, control_plane.server, control_plane.ca_file, token, namespace)
    as_agent = await kr8s.asyncio.api(kubeconfig=str(kubeconfig), namespace=namespace)
    reports = f"{ARTIFACT_API}/namespaces/{namespace}/artifactreports"

    def report_body(name: str) -> Json:
        return {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "ArtifactReport",
                "metadata": {"name": name}, "spec": {"nodeName": "node1"}}  # fmt: skip

    try:
        status, body = await request(as_agent, "POST", reports, body=report_body(other["name"]))
        assert status == 403, body
        assert "may write only the ArtifactReport named after the pod it is bound to" in str(body)
        status, _ = await request(as_agent, "POST", reports, body=report_body(own["name"]))
        assert status == 201
        status, body = await request(as_agent, "PATCH", f"{reports}/{own['name']}/status",
                                     body={"status": {"artifacts": []}}, content_type=MERGE)  # fmt: skip
        assert status == 200, body
        # An unbound token of the same ServiceAccount (no pod in its user info) may not write any report.
        unbound = service_account_token(control_plane, namespace, "falco")
        write_token_kubeconfig(kubeconfig, control_plane.server, control_plane.ca_file, unbound, namespace)
        loose = await kr8s.asyncio.api(kubeconfig=str(kubeconfig), namespace=namespace)
        try:
            assert (await request(loose, "POST", reports, body=report_body(other["name"])))[0] == 403
        finally:
            if loose._session is not None:
                await loose._session.aclose()
        # Users with their own credentials (here: admin) are not limited by the policy.
        assert (await request(api, "POST", reports, body=report_body(other["name"])))[0] == 201
    finally:
        if as_agent._session is not None:
            await as_agent._session.aclose()


async def rulesfile_warnings(api: kr8s.asyncio.Api, namespace: str, name: str) -> list[Json]:
    status, body = await request(
        api, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events?fieldSelector=regarding.name={name}"
    )
    assert status == 200, body
    return [event for event in body.get("items") or [] if event.get("type") == "Warning"]


async def test_an_invalid_rulesfile_gets_one_warning_event_per_new_problem(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    await create(api, namespace, rulesfile("broken", "- rule: x\n"))
    await wait_status(api, namespace, "broken", has("Valid", "status", "False"), "Valid=False")
    first = await wait_for(partial(rulesfile_warnings, api, namespace, "broken"), lambda events: len(events) == 1,
                           what="one Warning Event on the invalid Rulesfile")  # fmt: skip
    assert first[0]["reason"] == "InvalidContent"
    assert "missing desc, condition, output, priority" in first[0]["note"]
    assert first[0]["regarding"]["kind"] == "Rulesfile"

    # Another problem is another Event; the same problem again (a new generation with the same message) is none.
    await patch(api, namespace, "Rulesfile", "broken", {"spec": {"inlineRules": "- macro: m\n"}})
    second = await wait_for(partial(rulesfile_warnings, api, namespace, "broken"), lambda events: len(events) == 2,
                            what="a second Warning Event for the new problem")  # fmt: skip
    assert any("needs a condition" in event["note"] for event in second), second
    await patch(api, namespace, "Rulesfile", "broken", {"spec": {"priority": 41}})
    await wait_status(api, namespace, "broken", lambda obj: obj["status"]["observedGeneration"] == 3, "generation 3")
    assert len(await rulesfile_warnings(api, namespace, "broken")) == 2
