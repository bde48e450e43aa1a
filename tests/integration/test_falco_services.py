"""spec.services and spec.monitoring.serviceMonitor on the real control plane, with the operator under its own RBAC.

The ServiceMonitor test installs a minimal ServiceMonitor CRD half-way and removes it at the end: the tests of
this module run in file order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio
import pytest

from e2e.audit import AuditMark, describe
from e2e.controlplane import ControlPlane
from e2e.kube import call, request
from e2e.operator import RunningOperator, run_operator
from e2e.wait import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
Json = dict[str, Any]
FALCO_API = "/apis/instance.falcosecurity.dev/v1alpha1"
MONITOR_API = "/apis/monitoring.coreos.com/v1"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
MONITOR_CRD = "servicemonitors.monitoring.coreos.com"
MERGE = "application/merge-patch+json"
WEBHOOK = {"name": "k8saudit", "ports": [{"name": "webhook", "port": 9765}]}
MINIMAL_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": MONITOR_CRD},
    "spec": {
        "group": "monitoring.coreos.com",
        "names": {"kind": "ServiceMonitor", "listKind": "ServiceMonitorList", "plural": "servicemonitors",
                  "singular": "servicemonitor"},
        "scope": "Namespaced",
        "versions": [{"name": "v1", "served": True, "storage": True,
                      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, crds: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    # A short sync period: the steady-state checks must see periodic resyncs that change nothing.
    with run_operator(control_plane, tmp_path_factory.mktemp("operator"), "--sync-period=5") as running:
        yield running


def falco(name: str, spec: Json) -> Json:
    return {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco", "metadata": {"name": name},
            "spec": spec}  # fmt: skip


async def get(api: kr8s.asyncio.Api, path: str) -> Json | None:
    status, body = await request(api, "GET", path)
    return body if status == 200 else None


def condition(obj: Json | None, kind: str) -> Json | None:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


async def wait_service(api: kr8s.asyncio.Api, namespace: str, name: str, accept: Any, what: str) -> Json | None:
    async def probe() -> Json | None:
        return await get(api, f"/api/v1/namespaces/{namespace}/services/{name}")

    result: Json | None = await wait_for(probe, accept, what=what, timeout=60)
    return result


def own_writes(mark: AuditMark, operator: RunningOperator, namespace: str) -> list[Json]:
    return [w for w in mark.writes_since(user=operator.username)
            if w["objectRef"].get("namespace") == namespace]  # fmt: skip


# --- admission: what the schema refuses, in words -------------------------------------------------------------

BAD_SPECS = [
    ("duplicate-service-name", {"services": [WEBHOOK, WEBHOOK]}, ("spec.services[1]", "Duplicate value")),
    ("service-name-not-a-label", {"services": [{"name": "Audit_Hook", "ports": [{"name": "p", "port": 1}]}]},
     ("spec.services[0].name", "must be a DNS label")),
    ("too-many-services",
     {"services": [{"name": f"s{i}", "ports": [{"name": "p", "port": 1}]} for i in range(9)]},
     ("spec.services", "must have at most 8 items")),
    ("service-without-ports", {"services": [{"name": "a", "ports": []}]},
     ("spec.services[0].ports", "should have at least 1 items")),
    ("unknown-service-type", {"services": [{"name": "a", "type": "ExternalName", "ports": [{"name": "p", "port": 1}]}]},
     ("spec.services[0].type", 'Unsupported value: "ExternalName"')),
    ("port-out-of-range", {"services": [{"name": "a", "ports": [{"name": "p", "port": 70000}]}]},
     ("spec.services[0].ports[0].port", "less than or equal to 65535")),
    ("unknown-protocol", {"services": [{"name": "a", "ports": [{"name": "p", "port": 1, "protocol": "ICMP"}]}]},
     ("spec.services[0].ports[0].protocol", 'Unsupported value: "ICMP"')),
    ("duplicate-port-name",
     {"services": [{"name": "a", "ports": [{"name": "p", "port": 1}, {"name": "p", "port": 2}]}]},
     ("spec.services[0].ports", "two ports of one Service cannot have the same name")),
    ("two-ports-one-unnamed",
     {"services": [{"name": "a", "ports": [{"name": "p", "port": 1}, {"port": 2}]}]},
     ("spec.services[0].ports", "a Service with more than one port needs a name on every port")),
    ("same-port-and-protocol", {"services": [{"name": "a", "ports": [{"name": "p", "port": 1},
                                                                       {"name": "q", "port": 1}]}]},
     ("spec.services[0].ports", "two ports of one Service cannot have the same port and protocol")),
    ("node-port-on-cluster-ip", {"services": [{"name": "a", "ports": [{"name": "p", "port": 1, "nodePort": 30001}]}]},
     ("spec.services[0].ports", "nodePort can only be set when type is NodePort or LoadBalancer")),
    ("bad-target-port-name", {"services": [{"name": "a", "ports": [{"name": "p", "port": 1,
                                                                     "targetPort": "Web_Hook"}]}]},
     ("spec.services[0].ports[0].targetPort", "targetPort must be a port number 1-65535 or the name of a port")),
    ("target-port-zero", {"services": [{"name": "a", "ports": [{"name": "p", "port": 1, "targetPort": 0}]}]},
     ("spec.services[0].ports[0].targetPort", "targetPort must be a port number 1-65535")),
    ("service-name-too-long-with-the-falco-name",
     {"services": [{"name": "a" * 60, "ports": [{"name": "p", "port": 1}]}]},
     ("spec.services", "a Service is named <falco>-<name>, at most 63 characters")),
    ("monitor-interval-not-a-duration", {"monitoring": {"serviceMonitor": {"interval": "often"}}},
     ("spec.monitoring.serviceMonitor.interval", "must be a duration such as 30s, 1m or 1m30s")),
    ("monitor-interval-units-out-of-order", {"monitoring": {"serviceMonitor": {"interval": "30s1m"}}},
     ("spec.monitoring.serviceMonitor.interval", "in that order")),
    ("monitor-timeout-longer-than-interval",
     {"monitoring": {"serviceMonitor": {"interval": "10s", "scrapeTimeout": "1m"}}},
     ("spec.monitoring.serviceMonitor.scrapeTimeout", "scrapeTimeout must not be longer than interval")),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "expect"), [case[1:] for case in BAD_SPECS], ids=[case[0] for case in BAD_SPECS])
async def test_bad_services_and_monitors_are_refused_with_readable_messages(
    api: kr8s.asyncio.Api, namespace: str, spec: Json, expect: tuple[str, ...]
) -> None:
    status, body = await request(api, "POST", f"{FALCO_API}/namespaces/{namespace}/falcos",
                                 body=falco("bad", spec), params={"fieldValidation": "Strict"})  # fmt: skip
    assert status == 422, body
    for fragment in expect:
        assert fragment in body["message"], f"{fragment!r} not in {body['message']!r}"
    assert "should match" not in body["message"]


async def test_good_services_and_monitor_are_accepted_with_defaults(api: kr8s.asyncio.Api, namespace: str) -> None:
    spec = {"services": [WEBHOOK, {"name": "np", "type": "NodePort", "ports": [
        {"name": "webhook", "port": 9765, "targetPort": "webhook", "nodePort": 30765},
        {"name": "syslog", "port": 514, "protocol": "UDP"}]}],
        "monitoring": {"serviceMonitor": {"labels": {"release": "prom"}, "interval": "30s",
                                          "scrapeTimeout": "30s"}}}  # fmt: skip
    created = await call(api, "POST", f"{FALCO_API}/namespaces/{namespace}/falcos", body=falco("good", spec),
                         params={"fieldValidation": "Strict"})  # fmt: skip
    services = created["spec"]["services"]
    assert services[0]["type"] == "ClusterIP"
    assert services[0]["ports"][0]["protocol"] == "TCP"
    assert services[1]["ports"][1]["protocol"] == "UDP"


# --- the operator -----------------------------------------------------------------------------------------------


async def test_extra_services_are_created_changed_and_removed_and_only_ours(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane
) -> None:
    # A Service of the same shape of name that this Falco never listed and does not own: never touched.
    foreign = {"metadata": {"name": "audit-foreign", "labels": {"app.kubernetes.io/name": "falco",
                                                                "app.kubernetes.io/instance": "audit",
                                                                "app.kubernetes.io/managed-by": "falco-operator",
                                                                "instance.falcosecurity.dev/service": "foreign"}},
               "spec": {"ports": [{"name": "p", "port": 1}]}}  # fmt: skip
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/services", body=foreign)
    spec = {"type": "Deployment", "services": [WEBHOOK, {"name": "syslog", "ports": [
        {"name": "syslog", "port": 514, "targetPort": 5514, "protocol": "UDP"}]}]}  # fmt: skip
    created = await call(api, "POST", f"{FALCO_API}/namespaces/{namespace}/falcos", body=falco("audit", spec))
    uid = created["metadata"]["uid"]
    webhook = await wait_service(api, namespace, "audit-k8saudit", bool, "the webhook Service")
    assert webhook is not None
    headless = await get(api, f"/api/v1/namespaces/{namespace}/services/audit")
    assert headless is not None
    assert webhook["spec"]["selector"] == headless["spec"]["selector"]
    assert webhook["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"], p["targetPort"], p["protocol"]) for p in webhook["spec"]["ports"]] == [
        ("webhook", 9765, 9765, "TCP")]  # fmt: skip
    assert webhook["metadata"]["ownerReferences"][0]["uid"] == uid
    assert webhook["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "falco-operator"
    syslog = await wait_service(api, namespace, "audit-syslog", bool, "the syslog Service")
    assert syslog is not None
    assert syslog["spec"]["ports"][0]["protocol"] == "UDP"
    assert syslog["spec"]["ports"][0]["targetPort"] == 5514

    # Changed: the webhook becomes a NodePort with a second port.
    changed = {"spec": {"services": [{"name": "k8saudit", "type": "NodePort", "ports": [
        {"name": "webhook", "port": 9765, "nodePort": 30765}, {"name": "other", "port": 9766}]},
        spec["services"][1]]}}  # fmt: skip
    path = f"{FALCO_API}/namespaces/{namespace}/falcos/audit"
    await call(api, "PATCH", path, body=changed, content_type=MERGE)
    webhook = await wait_service(api, namespace, "audit-k8saudit",
                                 lambda s: bool(s) and s["spec"]["type"] == "NodePort",
                                 "the webhook Service as a NodePort")  # fmt: skip
    assert webhook is not None
    ports = {p["name"]: (p["port"], p.get("nodePort")) for p in webhook["spec"]["ports"]}
    assert ports["webhook"] == (9765, 30765)
    assert set(ports) == {"webhook", "other"}

    # One entry removed: its Service goes, the other stays.
    await call(api, "PATCH", path, body={"spec": {"services": [spec["services"][1]]}}, content_type=MERGE)
    await wait_service(api, namespace, "audit-k8saudit", lambda s: s is None, "the webhook Service deleted")
    assert await get(api, f"/api/v1/namespaces/{namespace}/services/audit-syslog") is not None

    # The whole list removed: every extra Service goes; the headless one and the foreign one stay.
    await call(api, "PATCH", path, body={"spec": {"services": None}}, content_type=MERGE)
    await wait_service(api, namespace, "audit-syslog", lambda s: s is None, "the syslog Service deleted")
    await anyio.sleep(2)
    assert await get(api, f"/api/v1/namespaces/{namespace}/services/audit") is not None
    assert await get(api, f"/api/v1/namespaces/{namespace}/services/audit-foreign") is not None


async def test_a_service_name_taken_by_another_gives_reconciled_false(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    theirs = {"metadata": {"name": "taken-k8saudit", "labels": {"app.kubernetes.io/managed-by": "helm"}},
              "spec": {"ports": [{"name": "p", "port": 1}]}}  # fmt: skip
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/services", body=theirs)
    await call(api, "POST", f"{FALCO_API}/namespaces/{namespace}/falcos",
               body=falco("taken", {"type": "Deployment", "services": [WEBHOOK]}))  # fmt: skip
    found = await wait_for(lambda: get(api, f"{FALCO_API}/namespaces/{namespace}/falcos/taken"),
                           lambda f: (condition(f, "Reconciled") or {}).get("status") == "False",
                           what="Reconciled=False", timeout=60)  # fmt: skip
    reconciled = condition(found, "Reconciled")
    assert reconciled is not None
    assert "Service taken-k8saudit already exists and is not owned by this Falco" in reconciled["message"]
    service = await get(api, f"/api/v1/namespaces/{namespace}/services/taken-k8saudit")
    assert service is not None
    assert service["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "helm"}
    assert not service["metadata"].get("ownerReferences")


async def test_service_monitor_waits_for_its_crd_then_follows_the_field_with_no_writes_in_steady_state(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane
) -> None:
    assert await get(api, f"{CRD_PATH}/{MONITOR_CRD}") is None, "this test installs the CRD itself"
    path = f"{FALCO_API}/namespaces/{namespace}/falcos/watched"
    spec = {"type": "Deployment", "services": [WEBHOOK],
            "monitoring": {"serviceMonitor": {"labels": {"release": "prom"}, "interval": "30s"}}}  # fmt: skip
    await call(api, "POST", f"{FALCO_API}/namespaces/{namespace}/falcos", body=falco("watched", spec))
    found = await wait_for(lambda: get(api, path),
                           lambda f: condition(f, "ServiceMonitor") is not None
                           and (condition(f, "Available") or {}).get("status") == "True",
                           what="the ServiceMonitor condition and the pod available", timeout=90)  # fmt: skip
    monitor_condition = condition(found, "ServiceMonitor")
    assert monitor_condition is not None
    assert found is not None
    uid = found["metadata"]["uid"]
    assert (monitor_condition["status"], monitor_condition["reason"]) == ("False", "CRDNotServed")
    assert "install the Prometheus Operator's CRDs" in monitor_condition["message"]
    assert (condition(found, "Reconciled") or {}).get("status") == "True", "everything else is applied"

    # Said once: resyncs every 5 s neither rewrite the status nor repeat the Event.
    await anyio.sleep(3)  # the last status write settles
    mark = AuditMark.now(control_plane.state.audit_log)
    await anyio.sleep(12)
    assert own_writes(mark, operator, namespace) == [], describe(own_writes(mark, operator, namespace))
    events = await call(api, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    said = [e for e in events["items"] if e["regarding"]["name"] == "watched" and e["reason"] == "CRDNotServed"]
    assert len(said) == 1, said

    try:
        await call(api, "POST", CRD_PATH, body=MINIMAL_MONITOR_CRD)
        monitor_path = f"{MONITOR_API}/namespaces/{namespace}/servicemonitors/watched"
        monitor = await wait_for(lambda: get(api, monitor_path), bool, what="the ServiceMonitor created", timeout=60)
        assert monitor is not None
        assert monitor["metadata"]["labels"]["release"] == "prom"
        assert monitor["metadata"]["ownerReferences"][0]["uid"] == uid
        assert monitor["spec"]["endpoints"] == [{"port": "web", "path": "/metrics",
                                                 "interval": "30s"}]  # fmt: skip
        selector = monitor["spec"]["selector"]
        assert selector["matchLabels"] == {"app.kubernetes.io/name": "falco", "app.kubernetes.io/instance": "watched"}
        found = await wait_for(lambda: get(api, path),
                               lambda f: (condition(f, "ServiceMonitor") or {}).get("status") == "True",
                               what="ServiceMonitor=True")  # fmt: skip

        # Steady state with the monitor and an extra Service: resyncs make no write.
        await anyio.sleep(3)
        mark = AuditMark.now(control_plane.state.audit_log)
        await anyio.sleep(15)
        writes = own_writes(mark, operator, namespace)
        assert writes == [], f"operator writes in steady state: {describe(writes)}"

        # A ServiceMonitor of the same name that someone else made is left alone, and the Falco says so.
        theirs = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                  "metadata": {"name": "taken-monitor", "labels": {"team": "observability"}},
                  "spec": {"endpoints": [{"port": "metrics"}]}}  # fmt: skip
        await call(api, "POST", f"{MONITOR_API}/namespaces/{namespace}/servicemonitors", body=theirs)
        wants = {"type": "Deployment", "monitoring": {"serviceMonitor": {}}}
        await call(api, "POST", f"{FALCO_API}/namespaces/{namespace}/falcos", body=falco("taken-monitor", wants))
        taken = await wait_for(lambda: get(api, f"{FALCO_API}/namespaces/{namespace}/falcos/taken-monitor"),
                               lambda f: condition(f, "ServiceMonitor") is not None, what="the condition")  # fmt: skip
        not_owned = condition(taken, "ServiceMonitor")
        assert not_owned is not None
        assert (not_owned["status"], not_owned["reason"]) == ("False", "NotOwned")
        kept = await get(api, f"{MONITOR_API}/namespaces/{namespace}/servicemonitors/taken-monitor")
        assert kept is not None
        assert kept["metadata"]["labels"] == {"team": "observability"}
        assert not kept["metadata"].get("ownerReferences")

        # A changed setting reaches the monitor; removing the field deletes it (and the condition goes).
        await call(api, "PATCH", path, body={"spec": {"monitoring": {"serviceMonitor": {"interval": "1m"}}}},
                   content_type=MERGE)  # fmt: skip
        await wait_for(lambda: get(api, monitor_path),
                       lambda m: m is not None and m["spec"]["endpoints"][0].get("interval") == "1m",
                       what="the new interval")  # fmt: skip
        await call(api, "PATCH", path, body={"spec": {"monitoring": None}}, content_type=MERGE)
        await wait_for(lambda: get(api, monitor_path), lambda m: m is None, what="the ServiceMonitor deleted")
        found = await wait_for(lambda: get(api, path), lambda f: condition(f, "ServiceMonitor") is None,
                               what="the condition removed")  # fmt: skip
        assert (condition(found, "Reconciled") or {}).get("status") == "True"
    finally:
        await request(api, "DELETE", f"{CRD_PATH}/{MONITOR_CRD}")
