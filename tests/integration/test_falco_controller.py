"""The Falco controller on the real control plane with simulated nodes.

The operator runs as its own process with its ServiceAccount's token, bound to the ClusterRole of
manifests/rbac, never as admin: every test here also proves that RBAC is sufficient.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
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
SEED_DIR = Path(__file__).resolve().parents[2] / "manifests" / "samples"
FALCO_API = "/apis/instance.falcosecurity.dev/v1alpha1"
ARTIFACT_API = "/apis/artifact.falcosecurity.dev/v1alpha1"
MERGE = "application/merge-patch+json"


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, crds: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    # A short sync period: the steady-state test must see periodic resyncs that change nothing.
    with run_operator(control_plane, tmp_path_factory.mktemp("operator"), "--sync-period=5") as running:
        yield running


def seed(name: str, namespace: str) -> Json:
    document: Json = YAML(typ="safe").load((SEED_DIR / name).read_text())
    document["metadata"]["namespace"] = namespace
    return document


async def create_falco(api: kr8s.asyncio.Api, namespace: str, body: Json) -> Json:
    result: Json = await call(api, "POST", f"{FALCO_API}/namespaces/{namespace}/falcos", body=body)
    return result


def falco(name: str, spec: Json | None = None, labels: dict[str, str] | None = None) -> Json:
    return {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco",
            "metadata": {"name": name, "labels": labels or {}}, "spec": spec or {}}  # fmt: skip


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


async def wait_available(api: kr8s.asyncio.Api, namespace: str, name: str, desired: int, timeout: float = 60) -> Json:
    obj = await wait_for(
        getter(api, f"{FALCO_API}/namespaces/{namespace}/falcos/{name}"),
        lambda f: (
            bool(f)
            and condition(f, "Available") == "True"
            and condition(f, "Reconciled") == "True"
            and ((f or {}).get("status") or {}).get("availableReplicas") == desired
        ),
        what=f"Falco {name} available with {desired} pods",
        timeout=timeout,
    )
    assert obj is not None
    return obj


def containers_by_name(pod_spec: Json, field: str) -> dict[str, Json]:
    return {c["name"]: c for c in pod_spec.get(field) or []}


async def test_seed_01_daemonset_on_every_node_with_the_documented_objects(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane
) -> None:
    await create_falco(api, namespace, seed("01-falco-sample.yaml", namespace))
    falco_obj = await wait_available(api, namespace, "falco-sample", 3)
    status = falco_obj["status"]
    assert (status["resourceType"], status["version"], status["desiredReplicas"]) == ("DaemonSet", "0.44.1", 3)

    table = control_plane.kubectl("get", "falco", "-n", namespace).stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:8] == ["NAME", "TYPE", "VERSION", "DESIRED", "READY", "UPDATED", "RECONCILED", "AVAILABLE"]
    assert row.split()[:8] == ["falco-sample", "DaemonSet", "0.44.1", "3", "3", "3", "True", "True"]

    ds = await call(api, "GET", f"/apis/apps/v1/namespaces/{namespace}/daemonsets/falco-sample")
    pod = ds["spec"]["template"]["spec"]
    falco_container = containers_by_name(pod, "containers")["falco"]
    assert falco_container["image"] == "docker.io/falcosecurity/falco:0.44.1"
    assert falco_container["args"] == ["/usr/bin/falco"]
    assert falco_container["securityContext"]["privileged"] is True
    assert falco_container["ports"][0]["containerPort"] == 8765
    assert falco_container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert falco_container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    mounts = {m["mountPath"] for m in falco_container["volumeMounts"]}
    expected = {"/host/proc", "/sys/kernel", "/host/run/containerd", "/etc/falco/rules.d", "/etc/falco/falco.yaml"}
    assert expected <= mounts
    agent = containers_by_name(pod, "initContainers")["artifact-operator"]
    assert agent["restartPolicy"] == "Always"
    assert agent["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert {e["name"] for e in agent["env"]} >= {"POD_NAME", "POD_NAMESPACE", "NODE_NAME", "FALCO_INSTANCE"}
    assert pod["automountServiceAccountToken"] is False
    token_mounts = [m for m in agent["volumeMounts"] if m["name"] == "agent-token"]
    assert token_mounts
    assert all(m["name"] != "agent-token" for m in falco_container["volumeMounts"])
    assert "instance.falcosecurity.dev/config-hash" in ds["spec"]["template"]["metadata"]["annotations"]

    config = await call(api, "GET", f"/api/v1/namespaces/{namespace}/configmaps/falco-sample")
    falco_yaml = YAML(typ="safe").load(config["data"]["falco.yaml"])
    assert falco_yaml["engine"]["kind"] == "modern_ebpf"
    assert falco_yaml["rules_files"] == ["/etc/falco/rules.d"]
    assert falco_yaml["watch_config_files"] is True
    service = await call(api, "GET", f"/api/v1/namespaces/{namespace}/services/falco-sample")
    assert service["spec"]["clusterIP"] == "None"
    for path in (f"/api/v1/namespaces/{namespace}/serviceaccounts/falco-sample",
                 f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/falco-sample",
                 f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings/falco-sample",
                 f"/apis/rbac.authorization.k8s.io/v1/clusterroles/falco:{namespace}:falco-sample",
                 f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/falco:{namespace}:falco-sample"):  # fmt: skip
        assert (await request(api, "GET", path))[0] == 200, path


async def test_seed_02_and_03_deployments_with_user_overrides(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    await create_falco(api, namespace, seed("02-falco-deployment.yaml", namespace))
    await wait_available(api, namespace, "falco-deployment", 1)
    deployment = await call(api, "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/falco-deployment")
    assert deployment["spec"]["replicas"] == 1
    config = await call(api, "GET", f"/api/v1/namespaces/{namespace}/configmaps/falco-deployment")
    assert YAML(typ="safe").load(config["data"]["falco.yaml"])["engine"]["kind"] == "nodriver"
    assert (await request(api, "GET", f"/apis/apps/v1/namespaces/{namespace}/daemonsets/falco-deployment"))[0] == 404

    # Seed 03 is the same Falco with a pod template override.
    custom = seed("03-falco-custom-podtemplate.yaml", namespace)
    await call(api, "PATCH", f"{FALCO_API}/namespaces/{namespace}/falcos/falco-deployment",
               body={"spec": custom["spec"]}, content_type=MERGE)  # fmt: skip

    async def template() -> Json:
        found: Json = await call(api, "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/falco-deployment")
        spec: Json = found["spec"]["template"]["spec"]
        return spec

    pod = await wait_for(
        template, lambda p: containers_by_name(p, "containers")["falco"]["image"] == "my-custom-falco-image:latest",
        what="custom image applied",
    )  # fmt: skip
    falco_container = containers_by_name(pod, "containers")["falco"]
    assert falco_container["tty"] is True
    assert falco_container["imagePullPolicy"] == "Always"  # as Kubernetes defaults it for a :latest image
    assert falco_container["args"] == ["/usr/bin/falco"]
    assert falco_container["readinessProbe"]["httpGet"]["port"] == 8765
    agent = containers_by_name(pod, "initContainers")["artifact-operator"]
    assert (agent["image"], agent["imagePullPolicy"]) == ("my-custom-artifact-image:latest", "Always")
    assert agent["restartPolicy"] == "Always"
    assert {e["name"] for e in agent["env"]} >= {"POD_NAME", "FALCO_INSTANCE"}
    falco_obj = await wait_for(
        getter(api, f"{FALCO_API}/namespaces/{namespace}/falcos/falco-deployment"),
        lambda f: (
            (f or {}).get("status", {}).get("version") == "latest" and (f or {})["status"]["observedGeneration"] == 2
        ),
        what="status follows the custom image",
    )
    assert falco_obj is not None


async def test_owned_fields_are_restored_and_foreign_fields_left_alone(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane
) -> None:
    await create_falco(api, namespace, falco("guarded"))
    await wait_available(api, namespace, "guarded", 3)
    path = f"/apis/apps/v1/namespaces/{namespace}/daemonsets/guarded"
    first_uid = (await call(api, "GET", path))["metadata"]["uid"]

    await call(api, "DELETE", path)
    recreated = await wait_for(getter(api, path), lambda ds: bool(ds) and (ds or {})["metadata"]["uid"] != first_uid,
                               what="DaemonSet recreated", timeout=15)  # fmt: skip
    assert recreated is not None

    control_plane.kubectl("annotate", "-n", namespace, "daemonset/guarded", "team=blue")
    control_plane.kubectl("set", "image", "-n", namespace, "daemonset/guarded", "falco=evil/falco:1")

    def image(ds: Json | None) -> str:
        return str(containers_by_name((ds or {})["spec"]["template"]["spec"], "containers")["falco"]["image"])

    default_image = "docker.io/falcosecurity/falco:0.44.1"
    restored = await wait_for(getter(api, path), lambda ds: bool(ds) and image(ds) == default_image,
                              what="image restored", timeout=15)  # fmt: skip
    assert restored is not None
    assert restored["metadata"]["annotations"]["team"] == "blue"
    await anyio.sleep(6)  # a resync later the annotation is still there
    assert (await call(api, "GET", path))["metadata"]["annotations"]["team"] == "blue"


async def test_a_field_dropped_from_the_spec_is_removed_from_the_objects(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    spec = {"podTemplateSpec": {"spec": {"nodeSelector": {"falco": "yes"}}}}
    await create_falco(api, namespace, falco("shrinking", spec, labels={"team": "sec"}))
    path = f"/apis/apps/v1/namespaces/{namespace}/daemonsets/shrinking"
    ds = await wait_for(getter(api, path), bool, what="DaemonSet", timeout=30)
    assert ds is not None
    assert ds["metadata"]["labels"]["team"] == "sec"
    assert ds["spec"]["template"]["spec"]["nodeSelector"] == {"falco": "yes"}
    falco_path = f"{FALCO_API}/namespaces/{namespace}/falcos/shrinking"
    dropped = {"metadata": {"labels": {"team": None}}, "spec": {"podTemplateSpec": None}}
    await call(api, "PATCH", falco_path, body=dropped, content_type=MERGE)
    shrunk = await wait_for(
        getter(api, path),
        lambda d: "team" not in (d or {})["metadata"]["labels"]
        and "nodeSelector" not in (d or {})["spec"]["template"]["spec"],
        what="label and nodeSelector removed", timeout=30,
    )  # fmt: skip
    assert shrunk is not None


async def test_type_switch_leaves_one_workload_and_deletion_removes_everything(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    await create_falco(api, namespace, falco("switch"))
    await wait_available(api, namespace, "switch", 3)
    falco_path = f"{FALCO_API}/namespaces/{namespace}/falcos/switch"
    await call(api, "PATCH", falco_path, body={"spec": {"type": "Deployment", "replicas": 2}}, content_type=MERGE)
    await wait_available(api, namespace, "switch", 2)
    ds_path = f"/apis/apps/v1/namespaces/{namespace}/daemonsets/switch"
    await wait_for(getter(api, ds_path), lambda ds: ds is None, what="DaemonSet removed", timeout=15)
    deployments = await call(api, "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments")
    assert [d["metadata"]["name"] for d in deployments["items"]] == ["switch"]

    cluster_paths = [f"/apis/rbac.authorization.k8s.io/v1/clusterroles/falco:{namespace}:switch",
                     f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/falco:{namespace}:switch"]  # fmt: skip
    # No finalizer holds the Falco; the cluster objects name the CRD as owner, so an uninstall removes them too.
    assert not (await call(api, "GET", falco_path))["metadata"].get("finalizers")
    crd = await call(
        api, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/falcos.instance.falcosecurity.dev"
    )
    for path in cluster_paths:
        owners = (await call(api, "GET", path))["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"], o["uid"]) for o in owners] == [
            ("CustomResourceDefinition", "falcos.instance.falcosecurity.dev", crd["metadata"]["uid"])
        ]

    await call(api, "DELETE", falco_path)
    await wait_for(getter(api, falco_path), lambda f: f is None, what="Falco gone at once", timeout=10)

    async def cluster_left() -> list[str]:
        return [path for path in cluster_paths if (await request(api, "GET", path))[0] != 404]

    await wait_for(cluster_left, lambda left: left == [], what="cluster objects removed", timeout=30)
    namespaced = [
        f"/api/v1/namespaces/{namespace}/{kind}/switch" for kind in ("serviceaccounts", "configmaps", "services")
    ]
    namespaced += [f"/apis/apps/v1/namespaces/{namespace}/deployments/switch",
                   f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/switch",
                   f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings/switch"]  # fmt: skip

    async def remaining() -> list[str]:
        return [path for path in namespaced if (await request(api, "GET", path))[0] == 200]

    await wait_for(remaining, lambda left: left == [], what="namespaced objects garbage-collected", timeout=60)


async def test_rejected_pod_template_reports_reconciled_false_and_recovers(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    bad_port = {"podTemplateSpec": {"spec": {"containers": [
        {"name": "falco", "ports": [{"name": "extra", "containerPort": 70000}]}]}}}  # fmt: skip
    await create_falco(api, namespace, falco("broken", bad_port))
    path = f"{FALCO_API}/namespaces/{namespace}/falcos/broken"
    failed = await wait_for(getter(api, path), lambda f: condition(f, "Reconciled") == "False",
                            what="Reconciled=False", timeout=30)  # fmt: skip
    message = next(c["message"] for c in failed["status"]["conditions"] if c["type"] == "Reconciled")  # type: ignore[index]
    assert "DaemonSet" in message
    assert "containerPort" in message
    events = await call(api, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    warnings = [e for e in events["items"] if e["regarding"]["name"] == "broken" and e["type"] == "Warning"]
    assert [e["reason"] for e in warnings].count("ApplyFailed") == 1

    await call(api, "PATCH", path, body={"spec": {"podTemplateSpec": None}}, content_type=MERGE)
    await wait_available(api, namespace, "broken", 3)


async def test_ten_falcos_in_steady_state_make_no_writes(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane
) -> None:
    names = [f"steady-{index}" for index in range(10)]
    for name in names:
        await create_falco(api, namespace, falco(name))
    async with anyio.create_task_group() as group:
        for name in names:
            group.start_soon(wait_available, api, namespace, name, 3, 120)
    await anyio.sleep(3)  # the last status writes settle
    reconciles_before = value(await scrape(operator.metrics_url), "controller_runtime_reconcile_total")
    mark = AuditMark.now(control_plane.state.audit_log)

    pods = (await call(api, "GET", f"/api/v1/namespaces/{namespace}/pods"))["items"]
    deadline = anyio.current_time() + 60
    round_number = 0
    while anyio.current_time() < deadline:
        round_number += 1
        # Pod status changes that change nothing the operator decides (a custom condition, as a probe would add).
        for pod in pods[:5]:
            status = copy.deepcopy(pod["status"])
            status["conditions"] = [c for c in status["conditions"] if c["type"] != "example.com/Probe"] + [
                {"type": "example.com/Probe", "status": "True", "lastTransitionTime": None,
                 "message": f"round {round_number}"}]  # fmt: skip
            await call(api, "PATCH", f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}/status",
                       body={"status": {"conditions": status["conditions"]}}, content_type=MERGE)  # fmt: skip
        await anyio.sleep(10)

    # Other tests' namespaces may be torn down meanwhile (their Falcos finalized): only this namespace counts.
    writes = [w for w in mark.writes_since(user=operator.username)
              if w["objectRef"].get("namespace") in (namespace, NAMESPACE)
              or f":{namespace}:" in str(w["objectRef"].get("name"))]  # fmt: skip
    # The leader renews its Lease every 2 s: that heartbeat is the only write allowed, and nothing else.
    renewals = [w for w in writes if w["objectRef"].get("resource") == "leases" and w["verb"] == "update"
                and w["objectRef"].get("name") == "falco-operator"]  # fmt: skip
    others = [w for w in writes if w not in renewals]
    assert others == [], f"operator writes in steady state: {describe(others)}"
    assert len(renewals) <= 35, f"{len(renewals)} lease renewals in 60 s"
    reconciles = value(await scrape(operator.metrics_url), "controller_runtime_reconcile_total") - reconciles_before
    assert reconciles >= 10 * 5, f"only {reconciles} reconciles: resyncs did not run"


async def test_agent_token_reads_only_the_secrets_its_artifacts_reference(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    await create_falco(api, namespace, falco("reader"))
    # Registry credentials both ways the operator grants them: by type, and by the opt-in label.
    for secret, type_, labels in (
        ("creds-a", "kubernetes.io/basic-auth", {}),
        ("creds-b", "Opaque", {"artifact.falcosecurity.dev/pull-secret": "true"}),
    ):
        await call(api, "POST", f"/api/v1/namespaces/{namespace}/secrets",
                   body={"metadata": {"name": secret, "labels": labels}, "type": type_,
                         "stringData": {"username": "u", "password": "p"}})  # fmt: skip
    role_path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/reader"
    role = await wait_for(getter(api, role_path), bool, what="agent Role", timeout=30)
    assert role is not None
    assert all("secrets" not in rule["resources"] for rule in role["rules"]), "no reference, no secrets rule"

    kubeconfig = tmp_path / "agent.kubeconfig"
    write_token_kubeconfig(kubeconfig, control_plane.server, control_plane.ca_file,
                           service_account_token(control_plane, namespace, "reader"), namespace)  # fmt: skip
    agent = await kr8s.asyncio.api(kubeconfig=str(kubeconfig), namespace=namespace)
    try:

        async def can_get(name: str) -> int:
            return (await request(agent, "GET", f"/api/v1/namespaces/{namespace}/secrets/{name}"))[0]

        assert await can_get("creds-a") == 403
        rulesfile = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
                     "metadata": {"name": "private-rules"},
                     "spec": {"ociArtifact": {"reference": "registry.example/rules/private:1",
                                              "pullSecret": {"secretName": "creds-a"}}}}  # fmt: skip
        await call(api, "POST", f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles", body=rulesfile)
        await wait_for(lambda: can_get("creds-a"), lambda code: code == 200, what="referenced secret readable")
        assert await can_get("creds-b") == 403

        moved = {"spec": {"ociArtifact": {"pullSecret": {"secretName": "creds-b"}}}}
        await call(api, "PATCH", f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles/private-rules",
                   body=moved, content_type=MERGE)  # fmt: skip
        await wait_for(lambda: can_get("creds-b"), lambda code: code == 200, what="new reference readable")
        await wait_for(lambda: can_get("creds-a"), lambda code: code == 403, what="old reference revoked")

        # Nothing beyond what the agent needs.
        checks = {
            f"/api/v1/namespaces/{namespace}/secrets": 403,
            f"/api/v1/namespaces/{namespace}/configmaps/reader": 403,
            f"/api/v1/namespaces/{namespace}/pods": 403,
            f"{FALCO_API}/namespaces/{namespace}/falcos/reader": 200,
            f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles": 200,
            "/api/v1/nodes/node1": 200,
        }
        for path, expected in checks.items():
            assert (await request(agent, "GET", path))[0] == expected, path
        created, _ = await request(agent, "POST", f"/api/v1/namespaces/{namespace}/configmaps",
                                   body={"metadata": {"name": "nope"}})  # fmt: skip
        assert created == 403
    finally:
        if agent._session is not None:
            await agent._session.aclose()
    role = await call(api, "GET", role_path)
    secrets_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert secrets_rules == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["creds-b"], "verbs": ["get"]}
    ]


def _own_writes(mark: AuditMark, operator: RunningOperator, namespace: str) -> list[Json]:
    """Writes of the operator concerning ``namespace``, but for the renewals of its Lease."""
    return [w for w in mark.writes_since(user=operator.username)
            if (w["objectRef"].get("namespace") == namespace or f":{namespace}:" in str(w["objectRef"].get("name")))
            and w["objectRef"].get("resource") != "leases"]  # fmt: skip


async def test_user_labels_never_reach_cluster_roles_so_they_cannot_join_aggregated_roles(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    aggregate = "rbac.authorization.k8s.io/aggregate-to-view"
    await create_falco(api, namespace, falco("aggregated", labels={aggregate: "true", "team": "blue"}))
    role_path = f"/apis/rbac.authorization.k8s.io/v1/clusterroles/falco:{namespace}:aggregated"
    role = await wait_for(getter(api, role_path), lambda found: found is not None, what="the agent's ClusterRole")
    assert role is not None
    assert aggregate not in role["metadata"]["labels"]
    assert "team" not in role["metadata"]["labels"]
    # The binding is applied after the role: wait for it as well.
    binding_path = f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/falco:{namespace}:aggregated"
    binding = await wait_for(getter(api, binding_path), lambda found: found is not None, what="the agent's binding")
    assert binding is not None
    assert "team" not in binding["metadata"]["labels"]
    sa = await call(api, "GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/aggregated")
    assert sa["metadata"]["labels"]["team"] == "blue", "namespaced objects still carry the Falco's labels"
    view = await call(api, "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/view")
    assert not [rule for rule in view.get("rules") or [] if "nodes" in rule.get("resources", [])]


async def test_a_name_applied_once_is_not_taken_over_when_another_tool_owns_it_now(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    """Delete a Falco, let another tool create objects of the same names, recreate the Falco: the operator must
    judge ownership from the live objects (not from having applied those names before) and leave them alone."""
    await create_falco(api, namespace, falco("reused"))
    sa_path = f"/api/v1/namespaces/{namespace}/serviceaccounts/reused"
    await wait_for(getter(api, sa_path), bool, what="the Falco's ServiceAccount")
    await call(api, "DELETE", f"{FALCO_API}/namespaces/{namespace}/falcos/reused")
    await wait_for(getter(api, sa_path), lambda obj: obj is None, what="the ServiceAccount collected", timeout=60)
    other = {"metadata": {"name": "reused", "labels": {"app.kubernetes.io/managed-by": "helm"}}}
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", body=other)
    await create_falco(api, namespace, falco("reused"))
    status = await wait_for(getter(api, f"{FALCO_API}/namespaces/{namespace}/falcos/reused"),
                            lambda obj: condition(obj, "Reconciled") == "False", what="Reconciled=False")  # fmt: skip
    assert status is not None
    message = next(c["message"] for c in status["status"]["conditions"] if c["type"] == "Reconciled")
    assert "ServiceAccount reused already exists and is not owned by this Falco" in message
    theirs = await getter(api, sa_path)()
    assert theirs is not None
    assert theirs["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "helm"}
    assert not theirs["metadata"].get("ownerReferences"), "not taken over"


async def test_cluster_rbac_left_by_a_falco_that_is_gone_is_removed(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    """What a Falco deleted while the operator was down leaves behind: the operator removes it, or a later
    ServiceAccount of the same name would inherit the binding."""
    name = f"falco:{namespace}:gone"
    labels = {"app.kubernetes.io/managed-by": "falco-operator", "instance.falcosecurity.dev/falco-namespace": namespace,
              "instance.falcosecurity.dev/falco-name": "gone"}  # fmt: skip
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    await call(api, "POST", f"{rbac}/clusterroles", body={"metadata": {"name": name, "labels": labels}, "rules": [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]})  # fmt: skip
    await call(api, "POST", f"{rbac}/clusterrolebindings", body={
        "metadata": {"name": name, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "gone", "namespace": namespace}]})  # fmt: skip
    for kind in ("clusterrolebindings", "clusterroles"):
        await wait_for(getter(api, f"{rbac}/{kind}/{name}"), lambda obj: obj is None, what=f"orphaned {kind} removed")


async def test_the_finalizer_of_earlier_versions_is_removed(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    """A Falco created under an earlier version carries its finalizer; left there, it would block deletion once
    no operator handles it (an uninstall): the operator takes it off and keeps other finalizers."""
    body = falco("upgraded")
    body["metadata"]["finalizers"] = ["instance.falcosecurity.dev/cluster-rbac", "example.com/keep"]
    await create_falco(api, namespace, body)
    path = f"{FALCO_API}/namespaces/{namespace}/falcos/upgraded"
    found = await wait_for(getter(api, path), lambda f: (f or {})["metadata"].get("finalizers") == ["example.com/keep"],
                           what="the legacy finalizer removed")  # fmt: skip
    assert found is not None
    await call(api, "PATCH", path, body={"metadata": {"finalizers": None}}, content_type=MERGE)


def _rolled_out(generation: int, obj: Json | None) -> bool:
    status = (obj or {}).get("status") or {}
    done = condition(obj, "Available") == "True" and condition(obj, "Progressing") == "False"
    return bool(status.get("observedGeneration") == generation and done)


async def test_rollouts_are_progress_not_warnings(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    await create_falco(api, namespace, falco("rolling"))
    await wait_available(api, namespace, "rolling", 3)
    path = f"{FALCO_API}/namespaces/{namespace}/falcos/rolling"
    for edit in range(5):
        template = {"metadata": {"annotations": {"falco-e2e/edit": str(edit)}}}
        await call(api, "PATCH", path, body={"spec": {"podTemplateSpec": template}}, content_type=MERGE)
        await wait_for(getter(api, path), partial(_rolled_out, edit + 2), what=f"rollout {edit} done", timeout=60)
    events = await call(api, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    warnings = [e["reason"] for e in events["items"] if e["regarding"]["name"] == "rolling" and e["type"] == "Warning"]
    assert warnings == [], "five rollouts, every one finished in time: no warning"


# Last in this module: it stops the module's operator (the tests after it would find none).
async def test_a_restarted_operator_finds_nothing_to_change(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """Runs last in this module: it replaces the module's operator by a fresh process with empty caches."""
    await create_falco(api, namespace, falco("plain", labels={"team": "sec"}))
    await create_falco(
        api,
        namespace,
        falco(
            "custom",
            {
                "type": "Deployment",
                "replicas": 2,
                "engine": {"kind": "kmod"},
                "podTemplateSpec": {"spec": {"nodeSelector": {"a": "b"}}},
            },
        ),
    )
    await call(api, "POST", f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles", body={
        "apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile", "metadata": {"name": "r"},
        "spec": {"configMapRef": {"name": "my-rules"}}})  # fmt: skip
    await wait_available(api, namespace, "plain", 3)
    await wait_for(getter(api, f"{FALCO_API}/namespaces/{namespace}/falcos/custom"),
                   lambda f: condition(f, "Reconciled") == "True", what="custom reconciled")  # fmt: skip
    await anyio.sleep(3)
    operator.process.terminate()
    operator.process.wait(timeout=30)
    mark = AuditMark.now(control_plane.state.audit_log)
    with run_operator(control_plane, tmp_path, "--sync-period=5") as fresh:
        await wait_for(lambda: scrape(fresh.metrics_url),
                       lambda s: value(s, "leader_election_master_status") == 1,
                       what="fresh operator leads")  # fmt: skip
        await anyio.sleep(12)  # the initial reconcile of everything and two resyncs
        reconciles = value(await scrape(fresh.metrics_url), "controller_runtime_reconcile_total")
    writes = _own_writes(mark, fresh, namespace)
    assert writes == [], f"a fresh operator wrote: {describe(writes)}"
    assert reconciles >= 6
