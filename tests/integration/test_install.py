"""The product as users install it: ``kubectl apply -f manifests/dist/install.yaml``, the seed examples, artifact
updates and deletion, an upgrade in place, and ``kubectl delete -f`` leaving nothing of the project behind.

Pods do not run on the local control plane: the operator runs as a local process with the installed
ServiceAccount's token, and agents as local processes for the Falco pods on the simulated nodes. The uninstall
deletes the CRDs the other modules use, so this module runs last (``conftest.py``) and puts them back after.
"""

from __future__ import annotations

import datetime
import json
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import kr8s.asyncio
import pytest
from ruamel.yaml import YAML

from e2e.agent import AgentProcess, wait_falco_pods
from e2e.controlplane import ControlPlane
from e2e.falco import FalcoBinaries
from e2e.kube import call, request
from e2e.operator import MANIFESTS, install_crds, run_operator
from e2e.promql import exposed_names, missing, shipped_promql
from e2e.scenarios.install import OPERATOR_NAMESPACE, identities, install, leftovers, pods, uninstall_command
from e2e.scenarios.realpods import expected_rules
from e2e.wait import wait_for
from tests.integration.agent_support import ARTIFACT_API, SEED_DIR, container_plugin, running_agents

pytestmark = pytest.mark.anyio
Json = dict[str, Any]
FALCO = "falco-sample"
FALCO_API = "/apis/instance.falcosecurity.dev/v1alpha1"
NODES = ["node1", "node2", "node3"]
RULES_FILE = "50-03-falco-rules-inline.yaml"
CONFIG_FILE = "50-03-config-label-selector-inline.yaml"
FALCO_CRD = "falcos.instance.falcosecurity.dev"
GC_DISCOVERY_RESYNC = 35.0


def seed_json(name: str, **rename: str) -> str:
    """A seed example for ``kubectl apply -f -`` in the test's namespace (one seed names ``default``)."""
    document: Json = YAML(typ="safe").load((SEED_DIR / name).read_text())
    document["metadata"].pop("namespace", None)
    document["metadata"].update(rename)
    return json.dumps(document)


async def programmed(api: kr8s.asyncio.Api, namespace: str, plural: str, name: str) -> Json:
    _, body = await request(api, "GET", f"{ARTIFACT_API}/namespaces/{namespace}/{plural}/{name}")
    status: Json = (body or {}).get("status") or {}
    return status


def _programmed_on(count: int, status: Json) -> bool:
    ok = any(c["type"] == "Programmed" and c["status"] == "True" for c in status.get("conditions") or [])
    nodes = status.get("nodes") or {}
    return ok and nodes.get("installed") == count and nodes.get("targeted") == count


async def files_everywhere(
    agents: dict[str, AgentProcess], pick: Callable[[AgentProcess], Path], name: str
) -> dict[str, bytes | None]:
    return {node: agent.files(pick(agent)).get(name) for node, agent in agents.items()}


async def test_install_use_upgrade_in_place_and_uninstall_with_kubectl(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    kubectl = control_plane.kubectl
    try:
        install(kubectl)
        install(kubectl, server_side=True)  # users switching to server-side apply meet no conflict
        with run_operator(control_plane, tmp_path / "operator", install=False) as operator:
            kubectl("apply", "-n", namespace, "-f", "-", stdin=seed_json("01-falco-sample.yaml"))
            pods = await wait_falco_pods(api, namespace, FALCO)
            async with running_agents(control_plane, tmp_path, namespace, FALCO, pods, NODES) as agents:
                # Seed 05 uses container fields: its agents withhold it unless the set configures that plugin.
                kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(container_plugin(falco_binaries)))
                await _seed_examples_and_artifact_changes(api, namespace, kubectl, agents)
                await _dashboard_and_alerts_ask_for_served_metrics(operator.metrics_url, agents["node1"])
                await _upgrade_in_place_restarts_nothing(api, namespace, kubectl)
                await _uninstall(api, namespace, control_plane, operator.process, agents)
    finally:
        install_crds(control_plane)  # for any module that runs after this one


async def _seed_examples_and_artifact_changes(
    api: kr8s.asyncio.Api, namespace: str, kubectl: Any, agents: dict[str, AgentProcess]
) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=seed_json("05-rulesfile-inline.yaml"))
    kubectl("apply", "-n", namespace, "-f", "-", stdin=seed_json("07-config-label-selector.yaml"))
    rejected = kubectl("apply", "-n", namespace, "-f", "-", stdin=seed_json("08-rulesfile-selector-invalid-name.yaml"),
                       check=False)  # fmt: skip
    assert rejected.returncode != 0
    assert "a lowercase RFC 1123 subdomain" in rejected.stderr

    rules = partial(files_everywhere, agents, lambda a: a.rules_dir, RULES_FILE)
    delivered = await wait_for(rules, lambda f: all(f.values()), what="seed 05 on every node", interval=0.1)
    seed05 = YAML(typ="safe").load((SEED_DIR / "05-rulesfile-inline.yaml").read_text())
    assert set(delivered.values()) == {expected_rules(seed05)}, "what make e2e expects Falco to load"
    config = await wait_for(partial(files_everywhere, agents, lambda a: a.config_dir, CONFIG_FILE),
                            lambda f: bool(f["node1"]), what="seed 07 on node1")  # fmt: skip
    assert (config["node2"], config["node3"]) == (None, None), "seed 07 selects node1 only"
    await wait_for(partial(programmed, api, namespace, "rulesfiles", "falco-rules"), partial(_programmed_on, 3),
                   what="Rulesfile Programmed, installed 3/3")  # fmt: skip

    # An edit reaches every node; a deletion removes the file everywhere.
    edit = {"spec": {"ociArtifact": {"inline": "- list: edited_by_the_install_test\n  items: [a]\n"}}}
    kubectl("patch", "rulesfile", "falco-rules", "-n", namespace, "--type=merge", "-p", json.dumps(edit))
    await wait_for(rules, lambda f: all(b"edited_by_the_install_test" in (t or b"") for t in f.values()),
                   what="the edit on every node", interval=0.1)  # fmt: skip
    kubectl("delete", "rulesfile", "falco-rules", "-n", namespace)
    await wait_for(rules, lambda f: not any(f.values()), what="the file removed everywhere", interval=0.1)


async def _dashboard_and_alerts_ask_for_served_metrics(operator_metrics: str, agent: AgentProcess) -> None:
    """Every metric the shipped Grafana dashboard and PrometheusRule use is served by the operator or the agent."""
    async with httpx.AsyncClient(timeout=5) as http:
        served = exposed_names((await http.get(operator_metrics)).text)
    status, agent_text = agent.get("/metrics")
    assert status == 200
    served |= exposed_names(agent_text)
    exprs = shipped_promql(MANIFESTS)
    assert exprs
    assert missing(exprs, served) == {}


async def _upgrade_in_place_restarts_nothing(api: kr8s.asyncio.Api, namespace: str, kubectl: Any) -> None:
    """Applying the release over itself (as an upgrade that changed nothing would) changes no object."""
    watched = [("deployment", OPERATOR_NAMESPACE, "falco-operator"), ("falco", namespace, FALCO),
               ("config", namespace, "config-label-selector"), ("daemonset", namespace, FALCO),
               ("crd", "", "falcos.instance.falcosecurity.dev")]  # fmt: skip
    objects, running = identities(kubectl, watched), pods(kubectl, [OPERATOR_NAMESPACE, namespace])
    assert len(running) == 4, running
    install(kubectl, server_side=True)
    install(kubectl)
    assert identities(kubectl, watched) == objects
    assert pods(kubectl, [OPERATOR_NAMESPACE, namespace]) == running


async def _uninstall(
    api: kr8s.asyncio.Api, namespace: str, plane: ControlPlane, operator: Any, agents: dict[str, AgentProcess]
) -> None:
    """``kubectl delete -f install.yaml`` while the operator and agents run; they stop as their pods would (the
    operator's namespace goes first), so nothing may wait on them: no Falco, CRD or namespace stays Terminating."""
    # The garbage collector learns of new kinds at its discovery resync (every 30 s); a Falco deleted before it
    # watches Falcos, with its CRD gone right after, would leave its dependents uncollected. Clusters have had
    # their CRDs for longer than that; so must this test.
    crd = await call(api, "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{FALCO_CRD}")
    created = datetime.datetime.fromisoformat(crd["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    age = (datetime.datetime.now(datetime.UTC) - created).total_seconds()
    await anyio.sleep(max(0.0, GC_DISCOVERY_RESYNC - age))
    result: list[Any] = []

    async def delete() -> None:
        result.append(await anyio.to_thread.run_sync(partial(plane.kubectl, *uninstall_command("100s"), check=False)))

    async with anyio.create_task_group() as group:
        group.start_soon(delete)
        await wait_for(partial(request, api, "GET", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}"),
                       lambda answer: answer[0] != 200 or bool(answer[1]["metadata"].get("deletionTimestamp")),
                       what="the operator's namespace deleted")  # fmt: skip
        operator.send_signal(signal.SIGTERM)
        for agent in agents.values():
            agent.stop()
    deleted = result[0]
    assert deleted.returncode == 0, f"kubectl delete failed:\n{deleted.stdout}\n{deleted.stderr}"

    async def remaining() -> list[str]:
        return await anyio.to_thread.run_sync(partial(leftovers, plane.kubectl, frozenset({FALCO})))

    await wait_for(remaining, lambda left: left == [], what="nothing of the project left", timeout=90, interval=1)
    falcos = await request(api, "GET", f"{FALCO_API}/namespaces/{namespace}/falcos")
    assert falcos[0] == 404, "the Falco API is gone with its CRD"
    assert await call(api, "GET", f"/api/v1/namespaces/{namespace}"), "the user's namespace is untouched"
