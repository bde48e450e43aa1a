"""Errors the operator cannot fix by retrying reach the Falco's status and one Warning Event: here a policy
engine (a ValidatingAdmissionPolicy) that refuses the DaemonSet."""

from __future__ import annotations

from functools import partial
from typing import Any

import kr8s.asyncio
import pytest

from e2e.kube import call, request
from e2e.operator import RunningOperator
from e2e.wait import wait_for

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
FALCO_API = "/apis/instance.falcosecurity.dev/v1alpha1"
VAP_API = "/apis/admissionregistration.k8s.io/v1"


async def falco_status(api: kr8s.asyncio.Api, namespace: str) -> Json:
    _, body = await request(api, "GET", f"{FALCO_API}/namespaces/{namespace}/falcos/falco")
    return dict((body or {}).get("status") or {})


async def warnings_for(api: kr8s.asyncio.Api, namespace: str) -> list[Json]:
    _, body = await request(api, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    return [event for event in (body or {}).get("items") or []
            if event.get("type") == "Warning" and (event.get("regarding") or {}).get("name") == "falco"]  # fmt: skip


async def test_a_daemonset_refused_by_a_policy_shows_in_status_and_one_warning(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    name = f"deny-daemonsets-{namespace[-6:]}"
    policy = {"metadata": {"name": name}, "spec": {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                                                "operations": ["CREATE", "UPDATE"], "resources": ["daemonsets"]}]},
        "validations": [{"expression": "false", "reason": "Forbidden",
                         "message": "DaemonSets are not allowed in this namespace by policy"}]}}  # fmt: skip
    only_here = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
    binding = {"metadata": {"name": name},
               "spec": {"policyName": name, "validationActions": ["Deny"], "matchResources": only_here}}  # fmt: skip
    await call(api, "POST", f"{VAP_API}/validatingadmissionpolicies", body=policy)
    await call(api, "POST", f"{VAP_API}/validatingadmissionpolicybindings", body=binding)
    try:
        # The policy is in force once a DaemonSet of ours is refused.
        template = {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
        probe = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "probe"},
                 "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": template}}  # fmt: skip
        await wait_for(lambda: request(api, "POST", f"/apis/apps/v1/namespaces/{namespace}/daemonsets", body=probe),
                       lambda answer: answer[0] == 403, what="the policy in force")  # fmt: skip
        falco = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco", "metadata": {"name": "falco"},
                 "spec": {}}  # fmt: skip
        await call(api, "POST", f"{FALCO_API}/namespaces/{namespace}/falcos", body=falco)
        status = await wait_for(partial(falco_status, api, namespace), lambda s: any(
            c["type"] == "Reconciled" and c["status"] == "False" for c in s.get("conditions") or []),
            what="Reconciled=False")  # fmt: skip
        reconciled = next(c for c in status["conditions"] if c["type"] == "Reconciled")
        assert "DaemonSets are not allowed in this namespace by policy" in reconciled["message"]
        assert "(403)" in reconciled["message"]
        events = await wait_for(partial(warnings_for, api, namespace), bool, what="a Warning Event")
        assert len(events) == 1, events
        assert "DaemonSets are not allowed" in events[0]["note"]
    finally:
        await request(api, "DELETE", f"{VAP_API}/validatingadmissionpolicybindings/{name}")
        await request(api, "DELETE", f"{VAP_API}/validatingadmissionpolicies/{name}")
