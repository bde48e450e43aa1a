"""The optional Falco guard policy (manifests/optional/falco-guard): for clusters that let others write Falco
resources, it refuses images from unlisted registries, extra privileged containers, another ServiceAccount and
host namespaces, and allows what the operator itself needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from e2e.controlplane import ControlPlane
from e2e.kube import request
from e2e.wait import wait_for

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
ROOT = Path(__file__).resolve().parents[2]
GUARD = ROOT / "manifests" / "optional" / "falco-guard"
FALCO_API = "/apis/instance.falcosecurity.dev/v1alpha1"
VAP_API = "/apis/admissionregistration.k8s.io/v1"


def falco(name: str, pod: Json | None = None) -> Json:
    spec = {"podTemplateSpec": {"spec": pod}} if pod is not None else {}
    return {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco", "metadata": {"name": name},
            "spec": spec}  # fmt: skip


async def test_the_guard_refuses_what_would_escalate_and_allows_the_rest(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane
) -> None:
    control_plane.kubectl("apply", "-f", str(ROOT / "manifests" / "manager" / "namespace.yaml"),
                          "-f", str(GUARD / "policy.yaml"), "-f", str(GUARD / "params.yaml"))  # fmt: skip
    name = f"falco-guard-{namespace[-6:]}"
    only_here = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
    params = {"name": "falco-operator-falco-guard", "namespace": "falco-operator-system",
              "parameterNotFoundAction": "Deny"}  # fmt: skip
    binding = {"metadata": {"name": name}, "spec": {"policyName": "falco-operator-falco-guard",
                                                    "validationActions": ["Deny"], "paramRef": params,
                                                    "matchResources": only_here}}  # fmt: skip
    status, body = await request(api, "POST", f"{VAP_API}/validatingadmissionpolicybindings", body=binding)
    assert status == 201, body
    path = f"{FALCO_API}/namespaces/{namespace}/falcos"
    try:
        evil = falco("evil", {"containers": [{"name": "falco", "image": "evil.example/falco:1"}]})
        refused = await wait_for(lambda: request(api, "POST", path, body=evil), lambda answer: answer[0] == 403,
                                 what="the guard in force")  # fmt: skip
        assert "container images must come from docker.io/falcosecurity/" in refused[1]["message"]
        cases: dict[str, tuple[Json, str]] = {
            "miner": ({"containers": [{"name": "miner", "image": "docker.io/falcosecurity/x:1",
                                        "securityContext": {"privileged": True}}]},
                      "only the falco and driver-loader containers may be privileged"),
            "other-sa": ({"serviceAccountName": "cluster-admin-sa"}, "may not choose another ServiceAccount"),
            "host-network": ({"hostNetwork": True}, "may not turn on hostPID, hostIPC or hostNetwork"),
            "init-image": ({"initContainers": [{"name": "init", "image": "busybox"}]}, "container images must"),
        }  # fmt: skip
        for case, (pod, message) in cases.items():
            status, body = await request(api, "POST", path, body=falco(case, pod))
            assert status == 403, (case, status, body)
            assert message in body["message"], (case, body["message"])
        allowed: dict[str, Json | None] = {
            "plain": None,
            "pinned": {"containers": [{"name": "falco", "image": "docker.io/falcosecurity/falco:0.44.1",
                                       "securityContext": {"privileged": True}}]},
            "tuned": {"nodeSelector": {"kubernetes.io/os": "linux"},
                      "containers": [{"name": "falco", "resources": {"limits": {"memory": "1Gi"}}}]},
        }  # fmt: skip
        for case, allowed_pod in allowed.items():
            status, body = await request(api, "POST", path, body=falco(case, allowed_pod))
            assert status == 201, (case, status, body)
    finally:
        await request(api, "DELETE", f"{VAP_API}/validatingadmissionpolicybindings/{name}")
        # The policy is optional: leave the cluster as the plain install has it.
        await request(api, "DELETE", f"{VAP_API}/validatingadmissionpolicies/falco-operator-falco-guard")
        await request(api, "DELETE", "/api/v1/namespaces/falco-operator-system/configmaps/falco-operator-falco-guard")
