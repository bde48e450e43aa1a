"""The Component controller on the real control plane with simulated nodes.

The operator runs as its own process with its ServiceAccount's token, bound to the ClusterRole of manifests/rbac,
never as admin: every test here also proves that RBAC is sufficient (and, for the metacollector's ClusterRole,
that the operator holds everything it grants).
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio
import pytest
from ruamel.yaml import YAML

from e2e.audit import AuditMark, describe
from e2e.controlplane import ControlPlane, write_token_kubeconfig
from e2e.kube import call, request
from e2e.metrics import scrape, value
from e2e.operator import NAMESPACE, RunningOperator, run_operator, service_account_token
from e2e.wait import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
Json = dict[str, Any]
SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
API = "/apis/instance.falcosecurity.dev/v1alpha1"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
MERGE = "application/merge-patch+json"
READ = ["get", "list", "watch"]
SAMPLE_FILES = {
    "metacollector": "11-component-metacollector.yaml",
    "falcosidekick": "12-component-falcosidekick.yaml",
    "falcosidekick-ui": "13-component-falcosidekick-ui.yaml",
}


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, crds: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    # A short sync period: the steady-state test must see periodic resyncs that change nothing.
    with run_operator(control_plane, tmp_path_factory.mktemp("operator"), "--sync-period=5") as running:
        yield running


def sample(type_: str) -> Json:
    document: Json = YAML(typ="safe").load((SAMPLES / SAMPLE_FILES[type_]).read_text())
    return document


def component(name: str, spec: Json) -> Json:
    return {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Component", "metadata": {"name": name},
            "spec": spec}  # fmt: skip


async def create(api: kr8s.asyncio.Api, namespace: str, body: Json) -> Json:
    result: Json = await call(api, "POST", f"{API}/namespaces/{namespace}/components", body=body)
    return result


def getter(api: kr8s.asyncio.Api, path: str) -> Callable[[], Awaitable[Json | None]]:
    async def get() -> Json | None:
        status, body = await request(api, "GET", path)
        return body if status == 200 else None

    return get


def condition(obj: Json | None, kind: str) -> str | None:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return str(item["status"])
    return None


async def wait_available(api: kr8s.asyncio.Api, namespace: str, name: str, desired: int, timeout: float = 90) -> Json:
    obj = await wait_for(
        getter(api, f"{API}/namespaces/{namespace}/components/{name}"),
        lambda c: (
            condition(c, "Available") == "True"
            and condition(c, "Reconciled") == "True"
            and ((c or {}).get("status") or {}).get("availableReplicas") == desired
        ),
        what=f"Component {name} available with {desired} pods",
        timeout=timeout,
    )
    assert obj is not None
    return obj


async def create_samples(api: kr8s.asyncio.Api, namespace: str) -> dict[str, Json]:
    for type_ in SAMPLE_FILES:
        await create(api, namespace, sample(type_))
    return {
        "metacollector": await wait_available(api, namespace, "metacollector", 1),
        "falcosidekick": await wait_available(api, namespace, "falcosidekick", 2),
        "falcosidekick-ui": await wait_available(api, namespace, "falcosidekick-ui", 1),
    }


def only_container(deployment: Json) -> Json:
    containers: list[Json] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


async def test_the_three_samples_become_available_with_their_objects(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane
) -> None:
    statuses = await create_samples(api, namespace)
    expected = {"metacollector": ("0.1.3", 45000, 1), "falcosidekick": ("2.32.0", 2801, 2),
                "falcosidekick-ui": ("2.2.0", 2802, 1)}  # fmt: skip
    for name, (version, port, replicas) in expected.items():
        status = statuses[name]["status"]
        assert (status["resourceType"], status["version"], status["desiredReplicas"]) == ("Deployment", version,
                                                                                           replicas)  # fmt: skip
        assert status["service"] == f"{name}.{namespace}.svc:{port}"
        assert status["observedGeneration"] == 1
        assert condition(statuses[name], "Progressing") == "False"
        service = await call(api, "GET", f"/api/v1/namespaces/{namespace}/services/{name}")
        assert service["spec"]["ports"][0]["port"] == port
        assert service["spec"]["selector"] == {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
        deployment = await call(api, "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        assert deployment["metadata"]["ownerReferences"][0]["kind"] == "Component"
        account = await call(api, "GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}")
        assert account["automountServiceAccountToken"] is (name == "metacollector")

    table = control_plane.kubectl("get", "components", "-n", namespace, "--sort-by=.metadata.name").stdout
    header, *rows = table.splitlines()
    assert header.split()[:8] == ["NAME", "COMPONENT", "VERSION", "DESIRED", "READY", "UPDATED", "RECONCILED",
                                  "AVAILABLE"]  # fmt: skip
    assert [row.split()[:8] for row in rows] == [
        ["falcosidekick", "falcosidekick", "2.32.0", "2", "2", "2", "True", "True"],
        ["falcosidekick-ui", "falcosidekick-ui", "2.2.0", "1", "1", "1", "True", "True"],
        ["metacollector", "metacollector", "0.1.3", "1", "1", "1", "True", "True"],
    ]

    sidekick = await call(api, "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/falcosidekick")
    assert only_container(sidekick)["env"] == [
        {"name": "WEBUI_URL", "value": f"http://falcosidekick-ui.{namespace}.svc:2802"}]  # fmt: skip
    ui = await call(api, "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/falcosidekick-ui")
    assert only_container(ui)["args"] == ["-r", f"falcosidekick-ui-redis.{namespace}.svc:6379"]
    redis = await call(api, "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/falcosidekick-ui-redis")
    assert redis["status"]["availableReplicas"] == 1
    assert only_container(redis)["image"] == "docker.io/redis/redis-stack-server:7.2.0-v11"
    redis_service = await call(api, "GET", f"/api/v1/namespaces/{namespace}/services/falcosidekick-ui-redis")
    assert redis_service["spec"]["ports"][0]["port"] == 6379

    events = await call(api, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    warnings = [(e["regarding"]["name"], e["reason"]) for e in events["items"]
                if e["regarding"]["kind"] == "Component" and e["type"] == "Warning"]  # fmt: skip
    assert warnings == [], "a first rollout is no warning"


async def test_rbac_is_least_privilege_per_type(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    await create(api, namespace, sample("metacollector"))
    await create(api, namespace, sample("falcosidekick"))
    await wait_available(api, namespace, "metacollector", 1)
    await wait_for(getter(api, f"{API}/namespaces/{namespace}/components/falcosidekick"),
                   lambda c: condition(c, "Reconciled") == "True", what="sidekick reconciled")  # fmt: skip
    cluster_name = f"falco-component:{namespace}:metacollector"
    role = await call(api, "GET", f"{RBAC}/clusterroles/{cluster_name}")
    assert role["rules"] == [
        {"apiGroups": ["apps"], "resources": ["daemonsets", "deployments", "replicasets"], "verbs": READ},
        {"apiGroups": [""], "resources": ["endpoints", "namespaces", "pods", "replicationcontrollers", "services"],
         "verbs": READ},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
    ]  # fmt: skip
    binding = await call(api, "GET", f"{RBAC}/clusterrolebindings/{cluster_name}")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "metacollector", "namespace": namespace}]
    for kind in ("clusterroles", "clusterrolebindings"):
        assert (await request(api, "GET", f"{RBAC}/{kind}/falco-component:{namespace}:falcosidekick"))[0] == 404

    async def statuses(account: str, paths: list[str]) -> list[int]:
        kubeconfig = tmp_path / f"{account}.kubeconfig"
        write_token_kubeconfig(kubeconfig, control_plane.server, control_plane.ca_file,
                               service_account_token(control_plane, namespace, account), namespace)  # fmt: skip
        client = await kr8s.asyncio.api(kubeconfig=str(kubeconfig), namespace=namespace)
        try:
            return [(await request(client, "GET", path))[0] for path in paths]
        finally:
            if client._session is not None:
                await client._session.aclose()

    collected = ["/api/v1/pods", "/apis/apps/v1/replicasets", "/apis/apps/v1/daemonsets", "/api/v1/namespaces",
                 "/apis/discovery.k8s.io/v1/endpointslices", "/api/v1/replicationcontrollers"]  # fmt: skip
    forbidden = ["/api/v1/secrets", f"/api/v1/namespaces/{namespace}/configmaps", "/api/v1/nodes",
                 f"{API}/components"]  # fmt: skip
    assert await statuses("metacollector", collected + forbidden) == [200] * len(collected) + [403] * len(forbidden)
    assert await statuses("falcosidekick", ["/api/v1/pods", f"/api/v1/namespaces/{namespace}/pods"]) == [403, 403]


async def test_deleting_a_component_removes_its_cluster_objects(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    await create(api, namespace, component("collector", {"component": {"type": "metacollector"}}))
    await wait_available(api, namespace, "collector", 1)
    name = f"falco-component:{namespace}:collector"
    for kind in ("clusterroles", "clusterrolebindings"):
        assert (await request(api, "GET", f"{RBAC}/{kind}/{name}"))[0] == 200
    await call(api, "DELETE", f"{API}/namespaces/{namespace}/components/collector")
    for kind in ("clusterrolebindings", "clusterroles"):
        await wait_for(getter(api, f"{RBAC}/{kind}/{name}"), lambda obj: obj is None, what=f"{kind} removed")


async def test_cluster_rbac_left_by_a_component_that_is_gone_is_removed(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    """What a Component deleted while the operator was down leaves behind: the operator removes it."""
    name = f"falco-component:{namespace}:gone"
    labels = {"app.kubernetes.io/managed-by": "falco-operator",
              "instance.falcosecurity.dev/component-namespace": namespace,
              "instance.falcosecurity.dev/component-name": "gone"}  # fmt: skip
    await call(api, "POST", f"{RBAC}/clusterroles", body={"metadata": {"name": name, "labels": labels}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})  # fmt: skip
    await call(api, "POST", f"{RBAC}/clusterrolebindings", body={
        "metadata": {"name": name, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "gone", "namespace": namespace}]})  # fmt: skip
    for kind in ("clusterrolebindings", "clusterroles"):
        await wait_for(getter(api, f"{RBAC}/{kind}/{name}"), lambda obj: obj is None, what=f"orphaned {kind} removed")


async def test_a_ui_with_its_own_redis_deploys_none_and_drops_the_one_it_had(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    await create(api, namespace, component("ui", {"component": {"type": "falcosidekick-ui"}}))
    await wait_available(api, namespace, "ui", 1)
    redis_path = f"/apis/apps/v1/namespaces/{namespace}/deployments/ui-redis"
    assert (await request(api, "GET", redis_path))[0] == 200
    path = f"{API}/namespaces/{namespace}/components/ui"
    await call(api, "PATCH", path, body={"spec": {"falcosidekickUI": {"redis": {"address": "redis.db:6379"}}}},
               content_type=MERGE)  # fmt: skip
    await wait_for(getter(api, redis_path), lambda obj: obj is None, what="the deployed Redis removed")
    assert (await request(api, "GET", f"/api/v1/namespaces/{namespace}/services/ui-redis"))[0] == 404
    deployment = await wait_for(
        getter(api, f"/apis/apps/v1/namespaces/{namespace}/deployments/ui"),
        lambda d: (
            only_container(d or {"spec": {"template": {"spec": {"containers": [{}]}}}}).get("args")
            == ["-r", "redis.db:6379"]
        ),
        what="the UI points at the given Redis",
    )
    assert deployment is not None
    await wait_available(api, namespace, "ui", 1)


async def test_a_name_taken_by_someone_else_is_reported_not_taken_over(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/services", body={
        "metadata": {"name": "taken"}, "spec": {"ports": [{"port": 80}]}})  # fmt: skip
    await create(api, namespace, component("taken", {"component": {"type": "falcosidekick"}}))
    found = await wait_for(getter(api, f"{API}/namespaces/{namespace}/components/taken"),
                           lambda c: condition(c, "Reconciled") == "False", what="Reconciled False")  # fmt: skip
    reconciled = next(c for c in (found or {})["status"]["conditions"] if c["type"] == "Reconciled")
    assert "Service taken already exists and is not owned by this Component" in reconciled["message"]
    service = await call(api, "GET", f"/api/v1/namespaces/{namespace}/services/taken")
    assert not service["metadata"].get("ownerReferences")


async def test_components_in_steady_state_make_no_writes(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane
) -> None:
    await create_samples(api, namespace)
    await create(api, namespace, component("sidekick-2", {"component": {"type": "falcosidekick"}, "replicas": 0}))
    await wait_for(getter(api, f"{API}/namespaces/{namespace}/components/sidekick-2"),
                   lambda c: condition(c, "Reconciled") == "True", what="sidekick-2 reconciled")  # fmt: skip
    await anyio.sleep(3)  # the last status writes settle
    reconciles_before = value(await scrape(operator.metrics_url), "controller_runtime_reconcile_total",
                              controller="component")  # fmt: skip
    mark = AuditMark.now(control_plane.state.audit_log)
    pods = (await call(api, "GET", f"/api/v1/namespaces/{namespace}/pods"))["items"]
    assert pods
    deadline = anyio.current_time() + 30
    round_number = 0
    while anyio.current_time() < deadline:
        round_number += 1
        # Pod status changes that change nothing the operator decides (a custom condition, as a probe would add).
        for pod in pods[:3]:
            status = copy.deepcopy(pod["status"])
            status["conditions"] = [c for c in status.get("conditions") or [] if c["type"] != "example.com/Probe"] + [
                {"type": "example.com/Probe", "status": "True", "lastTransitionTime": None,
                 "message": f"round {round_number}"}]  # fmt: skip
            await call(api, "PATCH", f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}/status",
                       body={"status": {"conditions": status["conditions"]}}, content_type=MERGE)  # fmt: skip
        await anyio.sleep(5)
    writes = [w for w in mark.writes_since(user=operator.username)
              if w["objectRef"].get("namespace") in (namespace, NAMESPACE)
              or f":{namespace}:" in str(w["objectRef"].get("name"))]  # fmt: skip
    others = [w for w in writes if w["objectRef"].get("resource") != "leases"]
    assert others == [], f"operator writes in steady state: {describe(others)}"
    reconciles = value(await scrape(operator.metrics_url), "controller_runtime_reconcile_total",
                       controller="component") - reconciles_before  # fmt: skip
    assert reconciles >= 4 * 4, f"only {reconciles} reconciles: resyncs did not run"


async def test_a_ui_deploying_its_redis_needs_a_name_its_redis_service_can_take(
    api: kr8s.asyncio.Api, namespace: str
) -> None:
    name = "u" * 58
    status, body = await request(api, "POST", f"{API}/namespaces/{namespace}/components",
                                 body=component(name, {"component": {"type": "falcosidekick-ui"}}))  # fmt: skip
    assert status == 422, body
    assert "at most 57 characters" in body["message"]
    own_redis = {"component": {"type": "falcosidekick-ui"}, "falcosidekickUI": {"redis": {"address": "r.db:6379"}}}
    created, _ = await request(api, "POST", f"{API}/namespaces/{namespace}/components", body=component(name, own_redis))
    assert created == 201
    sidekick = component("s" * 63, {"component": {"type": "falcosidekick"}})
    assert (await request(api, "POST", f"{API}/namespaces/{namespace}/components", body=sidekick))[0] == 201
