"""Smoke tests: the local control plane behaves like a real cluster in the ways this project relies on."""

from __future__ import annotations

import subprocess
from typing import Any

import kr8s.asyncio
import pytest

from e2e.controlplane import ControlPlane, write_token_kubeconfig
from e2e.kube import call, request
from e2e.wait import wait_for

pytestmark = pytest.mark.anyio

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.smoke.e2e.local"},
    "spec": {
        "group": "smoke.e2e.local",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            },
                            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                        },
                    }
                },
            }
        ],
    },
}


async def _crd_established(api: kr8s.asyncio.Api, name: str) -> bool:
    status, body = await request(api, "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    conditions = ((body or {}).get("status") or {}).get("conditions") or [] if status == 200 else []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


async def test_crd_with_status_subresource_round_trips_an_object(api: kr8s.asyncio.Api, namespace: str) -> None:
    status, _ = await request(api, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=WIDGET_CRD)
    assert status in (201, 409)
    await wait_for(lambda: _crd_established(api, "widgets.smoke.e2e.local"), bool, what="Widget CRD Established")
    collection = f"/apis/smoke.e2e.local/v1/namespaces/{namespace}/widgets"
    widget = {"apiVersion": "smoke.e2e.local/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}}
    # The API server may need a moment after Established before it serves the new resource.
    await wait_for(
        lambda: request(api, "POST", collection, body=widget), lambda result: result[0] == 201, what="Widget created"
    )
    read = await call(api, "GET", f"{collection}/w1")
    assert read["spec"] == {"size": 3}

    rejected, body = await request(api, "POST", collection, body={**widget, "metadata": {"name": "w2"}, "spec": {}})
    assert rejected == 422
    assert "spec.size: Required value" in body["message"]

    # The status subresource changes status only; the main resource ignores status.
    read["status"] = {"phase": "Ready"}
    read["spec"] = {"size": 5}
    await call(api, "PUT", f"{collection}/w1/status", body=read)
    after = await call(api, "GET", f"{collection}/w1")
    assert after["status"] == {"phase": "Ready"}
    assert after["spec"] == {"size": 3}


async def test_daemonset_on_three_simulated_nodes_becomes_available(api: kr8s.asyncio.Api, namespace: str) -> None:
    labels = {"app": "smoke"}
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "smoke"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "registry.invalid/smoke:1"}]},
            },
        },
    }
    path = f"/apis/apps/v1/namespaces/{namespace}/daemonsets"
    await call(api, "POST", path, body=daemonset)
    status = await wait_for(
        lambda: _status(api, f"{path}/smoke"),
        lambda s: s.get("desiredNumberScheduled") == 3 and s.get("numberAvailable") == 3,
        what="DaemonSet with 3 available pods",
        timeout=60,
    )
    assert status["numberReady"] == 3
    pods = await call(api, "GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": "app=smoke"})
    assert sorted(p["spec"]["nodeName"] for p in pods["items"]) == ["node1", "node2", "node3"]


async def _status(api: kr8s.asyncio.Api, path: str) -> dict[str, Any]:
    status: dict[str, Any] = (await call(api, "GET", path)).get("status", {})
    return status


async def test_deleting_an_owner_garbage_collects_its_dependents(api: kr8s.asyncio.Api, namespace: str) -> None:
    configmaps = f"/api/v1/namespaces/{namespace}/configmaps"
    owner = await call(api, "POST", configmaps, body={"metadata": {"name": "owner"}, "data": {"a": "1"}})
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    await call(api, "POST", configmaps, body={"metadata": {"name": "dependent", "ownerReferences": [reference]}})
    await call(api, "POST", configmaps, body={"metadata": {"name": "bystander"}})

    await call(api, "DELETE", f"{configmaps}/owner")
    await wait_for(
        lambda: request(api, "GET", f"{configmaps}/dependent"),
        lambda result: result[0] == 404,
        what="dependent garbage-collected",
        timeout=60,
    )
    assert (await request(api, "GET", f"{configmaps}/bystander"))[0] == 200


async def test_service_account_token_is_refused_a_verb_its_role_lacks(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Any
) -> None:
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", body={"metadata": {"name": "reader"}})
    role = {
        "metadata": {"name": "configmap-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }
    await call(api, "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles", body=role)
    binding = {
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
    }
    await call(api, "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings", body=binding)
    token_request = await call(
        api,
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/reader/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}},
    )
    kubeconfig = tmp_path / "reader.kubeconfig"
    write_token_kubeconfig(kubeconfig, control_plane.server, control_plane.ca_file, token_request["status"]["token"])
    reader = await kr8s.asyncio.api(kubeconfig=str(kubeconfig), namespace=namespace)
    try:
        allowed, _ = await request(reader, "GET", f"/api/v1/namespaces/{namespace}/configmaps")
        created, body = await request(
            reader, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body={"metadata": {"name": "nope"}}
        )
        other_namespace, _ = await request(reader, "GET", "/api/v1/namespaces/default/configmaps")
    finally:
        if reader._session is not None:
            await reader._session.aclose()
    assert allowed == 200
    assert created == 403, body
    assert "cannot create resource" in body["message"]
    assert other_namespace == 403


def test_kubectl_apply_of_a_manifest_works(control_plane: ControlPlane, tmp_path: Any) -> None:
    """kubectl apply needs the API server's OpenAPI document (broken when built with Go's jsonv2)."""
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: default\ndata:\n  key: value\n"
    )
    kubectl = [str(control_plane.binaries.path("kubectl")), f"--kubeconfig={control_plane.kubeconfig}"]
    for _ in range(2):  # the second apply computes a three-way diff from the OpenAPI schema
        result = subprocess.run([*kubectl, "apply", "-f", str(manifest)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    explained = subprocess.run([*kubectl, "explain", "configmap.data"], capture_output=True, text=True, timeout=60)
    assert explained.returncode == 0, explained.stderr
    assert "FIELD: data" in explained.stdout
    subprocess.run([*kubectl, "delete", "-f", str(manifest)], capture_output=True, timeout=60, check=True)


async def test_simulated_nodes_renew_their_leases(api: kr8s.asyncio.Api) -> None:
    path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node1"
    first = (await call(api, "GET", path))["spec"]["renewTime"]
    renewed = await wait_for(
        lambda: call(api, "GET", path), lambda lease: lease["spec"]["renewTime"] != first, timeout=20
    )
    assert renewed["spec"]["holderIdentity"] == "node1"
    node = await call(api, "GET", "/api/v1/nodes/node1")
    assert not node["spec"].get("taints"), node["spec"].get("taints")
