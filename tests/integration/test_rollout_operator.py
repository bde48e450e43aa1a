"""Staged rollouts, the operator's half, on a control plane of its own with five simulated nodes and no agents:
the test writes the ArtifactReports the agents would (each node delivering what ``delivers_live`` says, and the
verdicts the test chooses), and checks status.rollout, the snapshot, Programmed, Events, the metric, the
annotation and a restart of the operator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio
import pytest

from e2e.agent import falco_pods, rule, rulesfile
from e2e.audit import AuditMark, describe
from e2e.controlplane import ControlPlane
from e2e.kube import call, request
from e2e.metrics import scrape, value
from e2e.operator import RunningOperator, plane_with_crds, run_operator
from e2e.wait import wait_for
from falco_operator.api.plain import ROLLOUT_ANNOTATION, SNAPSHOT_KEY
from falco_operator.rollout.effective import delivers_live
from tests.integration.agent_support import ARTIFACT_API, MERGE, create, patch

Json = dict[str, Any]
pytestmark = pytest.mark.anyio
NODES = tuple(f"node{index}" for index in range(1, 6))
QUIET = "evt.type = open and proc.name = nope"
APPLY = "application/apply-patch+yaml"
ROLLOUT = {"steps": [{"nodes": 1}, {"percent": 100}], "analysis": {"duration": "10s", "maxRuleRate": 1}}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with plane_with_crds(tmp_path_factory.mktemp("plane5"), NODES) as started:
        yield started


@pytest.fixture
async def admin(plane: ControlPlane) -> AsyncIterator[kr8s.asyncio.Api]:
    client = await kr8s.asyncio.api(kubeconfig=str(plane.kubeconfig), namespace="default")
    yield client
    if client._session is not None:
        await client._session.aclose()


class Agents:
    """Writes the reports five agents would: what each node delivers, and the verdicts the test gives."""

    def __init__(self, api: kr8s.asyncio.Api, namespace: str, pods: dict[str, Json]) -> None:
        self.api, self.namespace, self.pods = api, namespace, pods
        self.verdicts: dict[str, Json] = {}

    async def start(self) -> None:
        for node, pod in self.pods.items():
            body = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "ArtifactReport",
                    "metadata": {"name": pod["metadata"]["name"]},
                    "spec": {"nodeName": node, "instance": "falco"}}  # fmt: skip
            await call(self.api, "POST", f"{ARTIFACT_API}/namespaces/{self.namespace}/artifactreports", body=body)

    async def report(self, artifact: Json) -> dict[str, int]:
        """Each node's report of ``artifact`` (as the API serves it now); returns the generation per node."""
        delivered = {}
        rollout = (artifact.get("status") or {}).get("rollout") or {}
        for node, pod in self.pods.items():
            live = delivers_live(artifact, node)
            generation = artifact["metadata"]["generation"] if live else rollout["stableGeneration"]
            entry: Json = {"kind": "Rulesfile", "name": artifact["metadata"]["name"], "generation": generation,
                           "state": "Loaded"}  # fmt: skip
            verdict = self.verdicts.get(node)
            if live and verdict is not None and verdict["generation"] == generation:
                entry["analysis"] = verdict
            body = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "ArtifactReport",
                    "metadata": {"name": pod["metadata"]["name"]}, "status": {"artifacts": [entry]}}  # fmt: skip
            path = f"{ARTIFACT_API}/namespaces/{self.namespace}/artifactreports/{pod['metadata']['name']}/status"
            await call(self.api, "PATCH", path, body=json.dumps(body), content_type=APPLY,
                       params={"fieldManager": "agent-simulator", "force": "true"})  # fmt: skip
            delivered[node] = generation
        return delivered


async def get_rulesfile(api: kr8s.asyncio.Api, namespace: str, name: str) -> Json:
    answer, body = await request(api, "GET", f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles/{name}")
    return body if answer == 200 and isinstance(body, dict) else {}


def rollout_of(obj: Json) -> Json:
    return dict((obj.get("status") or {}).get("rollout") or {})


def loaded_nodes(obj: Json) -> int | None:
    """How many nodes the status counts as running the current generation (Falco loaded it there)."""
    loaded = ((obj.get("status") or {}).get("nodes") or {}).get("loaded")
    return loaded if isinstance(loaded, int) else None


def programmed(obj: Json) -> Json:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Programmed"), {})


async def wait_rollout(api: kr8s.asyncio.Api, namespace: str, accept: Any, what: str, timeout: float = 30) -> Json:
    return await wait_for(partial(get_rulesfile, api, namespace, "canary"), lambda obj: bool(accept(rollout_of(obj))),
                          timeout=timeout, what=what)  # fmt: skip


async def events(api: kr8s.asyncio.Api, namespace: str, reason: str) -> list[Json]:
    body = await call(api, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    return [item for item in body.get("items") or [] if item.get("reason") == reason]


async def annotate(api: kr8s.asyncio.Api, namespace: str, word: str | None) -> None:
    await call(api, "PATCH", f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles/canary",
               body={"metadata": {"annotations": {ROLLOUT_ANNOTATION: word}}}, content_type=MERGE)  # fmt: skip


async def edit(api: kr8s.asyncio.Api, namespace: str, number: int) -> None:
    await patch(api, namespace, "Rulesfile", "canary", {"spec": {"inlineRules": rule("canary", f"{QUIET}{number}")}})


def status_writes(mark: AuditMark, namespace: str) -> list[Json]:
    return [w for w in mark.writes_since(namespace=namespace) if w["objectRef"].get("resource") == "rulesfiles"
            and w["objectRef"].get("subresource") == "status"]  # fmt: skip


async def metric(operator: RunningOperator, result: str) -> float:
    return value(await scrape(operator.metrics_url), "falco_operator_rollouts_total", kind="Rulesfile", result=result)


async def test_a_rollout_steps_halts_pauses_aborts_and_survives_a_restart(
    plane: ControlPlane, admin: kr8s.asyncio.Api, tmp_path: Path
) -> None:
    namespace = "rollout"
    api = admin
    await call(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    with run_operator(plane, tmp_path / "operator1") as operator:
        pods = await falco_pods(api, namespace, "falco", nodes=len(NODES))
        agents = Agents(api, namespace, pods)
        await agents.start()
        await create(api, namespace, rulesfile("canary", rule("canary", QUIET), rollout=ROLLOUT))

        # Generation 1 goes everywhere at once; once programmed it is the stable one, kept in a snapshot.
        obj = await get_rulesfile(api, namespace, "canary")
        assert await agents.report(obj) == dict.fromkeys(NODES, 1)
        obj = await wait_rollout(api, namespace, lambda r: r.get("phase") == "Succeeded", "generation 1 stable")
        assert rollout_of(obj) == {"phase": "Succeeded", "stableGeneration": 1, "snapshot": "canary-rulesfile-stable"}
        snapshot = await call(api, "GET", f"/api/v1/namespaces/{namespace}/configmaps/canary-rulesfile-stable")
        stable = json.loads(snapshot["data"][SNAPSHOT_KEY])
        assert stable["metadata"]["generation"] == 1
        assert stable["spec"]["inlineRules"] == rule("canary", QUIET)
        assert snapshot["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]

        # An edit: step 1 on one node; the other four keep generation 1.
        await edit(api, namespace, 2)
        obj = await wait_rollout(api, namespace, lambda r: r.get("candidateGeneration") == 2, "step 1 of generation 2")
        first = rollout_of(obj)
        assert (first["phase"], first["step"], first["steps"], first["stableGeneration"]) == ("Progressing", 1, 2, 1)
        assert len(first["nodes"]) == 1
        delivered = await agents.report(obj)
        assert [node for node, generation in delivered.items() if generation == 2] == first["nodes"]
        # RollingOut is written with the step, before the reports: settled once the status counts the step's node
        # (the reports reach it after the operator's coalescing window, later still on a busy machine).
        rolling = await wait_for(partial(get_rulesfile, api, namespace, "canary"),
                                 lambda o: programmed(o).get("reason") == "RollingOut" and loaded_nodes(o) == 1,
                                 what="RollingOut, with the step's node counted")  # fmt: skip
        assert programmed(rolling)["message"].startswith(f"step 1/2: generation 2 on {first['nodes'][0]}; ")

        # Steady while the step waits: no status write (the operator requeues itself, writes nothing).
        mark = AuditMark.now(plane.state.audit_log)
        await anyio.sleep(12)
        assert status_writes(mark, namespace) == [], describe(status_writes(mark, namespace))

        # Its verdict passes: step 2 on every node, then Succeeded with a new snapshot.
        mark = AuditMark.now(plane.state.audit_log)
        agents.verdicts = {first["nodes"][0]: {"generation": 2, "result": "Passed", "seconds": 10}}
        await agents.report(await get_rulesfile(api, namespace, "canary"))
        obj = await wait_rollout(api, namespace, lambda r: r.get("step") == 2, "step 2 of generation 2")
        assert sorted(rollout_of(obj)["nodes"]) == list(NODES)
        assert await agents.report(obj) == dict.fromkeys(NODES, 2)
        agents.verdicts = {node: {"generation": 2, "result": "Passed", "seconds": 10} for node in NODES}
        await agents.report(obj)
        await wait_rollout(api, namespace, lambda r: r.get("stableGeneration") == 2, "generation 2 promoted")
        await anyio.sleep(3)
        writes = status_writes(mark, namespace)
        print(f"\nstatus writes for a two-step rollout's steps and promotion (five nodes): {len(writes)}")
        assert len(writes) <= 6, describe(writes)
        snapshot = await call(api, "GET", f"/api/v1/namespaces/{namespace}/configmaps/canary-rulesfile-stable")
        assert json.loads(snapshot["data"][SNAPSHOT_KEY])["metadata"]["generation"] == 2
        assert await events(api, namespace, "RolloutStep")
        assert await events(api, namespace, "RolloutSucceeded")
        assert await metric(operator, "succeeded") == 1

        # A failed check halts the rollout: no node runs the candidate; status, Event and metric say why.
        await edit(api, namespace, 3)
        obj = await wait_rollout(api, namespace, lambda r: r.get("candidateGeneration") == 3, "step 1 of gen 3")
        canary = rollout_of(obj)["nodes"][0]
        figures = 'rule "canary" matched 10.1/s over 12s (limit 1/s)'
        agents.verdicts = {canary: {"generation": 3, "result": "Failed", "check": "RuleRate", "message": figures}}
        await agents.report(obj)
        obj = await wait_rollout(api, namespace, lambda r: r.get("phase") == "Halted", "Halted")
        assert f"{canary}: RuleRate: {figures}" in rollout_of(obj)["message"]
        assert "nodes" not in rollout_of(obj)
        assert programmed(obj)["reason"] == "RolledBack"
        assert await agents.report(obj) == dict.fromkeys(NODES, 2), "every node swaps back to the stable"
        halted = await events(api, namespace, "RolloutHalted")
        assert halted
        assert halted[0]["type"] == "Warning"
        assert figures in halted[0]["note"]
        assert await metric(operator, "halted") == 1

        # A new edit starts over from the stable; pause holds the step even with its verdict in.
        await edit(api, namespace, 4)
        obj = await wait_rollout(api, namespace, lambda r: r.get("candidateGeneration") == 4, "step 1 of gen 4")
        await annotate(api, namespace, "pause")
        obj = await wait_rollout(api, namespace, lambda r: r.get("phase") == "Paused", "Paused")
        paused = rollout_of(obj)
        agents.verdicts = {node: {"generation": 4, "result": "Passed"} for node in paused["nodes"]}
        await agents.report(obj)
        await anyio.sleep(4)
        assert rollout_of(await get_rulesfile(api, namespace, "canary")) == paused, "no step passes while paused"
        await annotate(api, namespace, None)
        obj = await wait_rollout(api, namespace, lambda r: r.get("step") == 2, "resumed into step 2")
        step2 = rollout_of(obj)

    # The operator restarts mid-rollout: it resumes where it was, with the same nodes.
    with run_operator(plane, tmp_path / "operator2") as operator:
        await anyio.sleep(5)
        assert rollout_of(await get_rulesfile(api, namespace, "canary")) == step2
        agents.verdicts = {node: {"generation": 4, "result": "Passed"} for node in NODES}
        await agents.report(obj)
        await wait_rollout(api, namespace, lambda r: r.get("stableGeneration") == 4, "generation 4 promoted")

        # Abort: final for that generation.
        await edit(api, namespace, 5)
        await wait_rollout(api, namespace, lambda r: r.get("candidateGeneration") == 5, "step 1 of gen 5")
        await annotate(api, namespace, "abort")
        obj = await wait_rollout(api, namespace, lambda r: r.get("phase") == "Aborted", "Aborted")
        assert programmed(obj)["reason"] == "RolledBack"
        assert await agents.report(obj) == dict.fromkeys(NODES, 4)
        assert await events(api, namespace, "RolloutAborted")
        assert await metric(operator, "aborted") == 1


async def test_falcorules_rulesfile_carries_the_falcos_rollout(
    plane: ControlPlane, admin: kr8s.asyncio.Api, tmp_path: Path
) -> None:
    namespace, team = "rollout-falco", "rollout-team"
    for name in (namespace, team):
        await call(admin, "POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    with run_operator(plane, tmp_path / "operator"):
        body = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco", "metadata": {"name": "falco"},
                "spec": {"falcoRules": {"namespaceSelector": {}, "rollout": ROLLOUT}}}  # fmt: skip
        await call(admin, "POST", f"/apis/instance.falcosecurity.dev/v1alpha1/namespaces/{namespace}/falcos", body=body)
        falco_rule = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "FalcoRule",
                      "metadata": {"name": "shell"}, "spec": {"rule": "shell", "condition": "proc.name = bash",
                                                               "output": "shell", "priority": "notice"}}  # fmt: skip
        await call(admin, "POST", f"{ARTIFACT_API}/namespaces/{team}/falcorules", body=falco_rule)
        path = f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles"
        listing = await wait_for(partial(call, admin, "GET", path), lambda body: bool(body.get("items")),
                                 what="the generated Rulesfile")  # fmt: skip
        generated = listing["items"][0]
        assert generated["spec"]["rollout"]["steps"] == ROLLOUT["steps"]
