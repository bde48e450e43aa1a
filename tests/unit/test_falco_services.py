"""spec.services and spec.monitoring.serviceMonitor: the models and the pure builders."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from falco_operator.api import Falco
from falco_operator.instance.naming import selector_labels
from falco_operator.instance.options import BuildOptions
from falco_operator.instance.rbac import References
from falco_operator.instance.reconciler import desired_objects
from falco_operator.instance.servicemonitor import (
    build_service_monitor,
    crd_serves_service_monitors,
    wants_service_monitor,
)
from falco_operator.instance.services import SERVICE_LABEL, build_extra_services, removable_services
from falco_operator.instance.workload import build_service

Json = dict[str, Any]
WEBHOOK = {"name": "k8saudit", "ports": [{"name": "webhook", "port": 9765}]}


def make(spec: Json | None = None, labels: dict[str, str] | None = None) -> tuple[Falco, Json]:
    raw = {
        "apiVersion": "instance.falcosecurity.dev/v1alpha1",
        "kind": "Falco",
        "metadata": {"name": "f", "namespace": "ns", "uid": "uid-1", "labels": labels or {}, "generation": 1},
        "spec": spec or {},
    }
    return Falco.model_validate(raw), raw


def test_an_extra_service_selects_the_falco_pods_and_defaults_target_port_and_protocol() -> None:
    falco, raw = make({"services": [WEBHOOK]}, labels={"team": "blue"})
    [service] = build_extra_services(falco, raw, BuildOptions())
    assert service["metadata"]["name"] == "f-k8saudit"
    assert service["metadata"]["namespace"] == "ns"
    assert service["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert service["metadata"]["labels"] == {**selector_labels("f"), "app.kubernetes.io/managed-by": "falco-operator",
                                             "team": "blue", SERVICE_LABEL: "k8saudit"}  # fmt: skip
    headless = build_service(falco, raw, BuildOptions())
    assert service["spec"]["selector"] == headless["spec"]["selector"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "webhook", "port": 9765, "targetPort": 9765, "protocol": "TCP"}]
    assert SERVICE_LABEL not in headless["metadata"]["labels"]


def test_node_port_named_target_port_and_protocol_are_passed_on() -> None:
    entry = {"name": "ext", "type": "NodePort", "ports": [
        {"name": "webhook", "port": 9765, "targetPort": "webhook", "nodePort": 30765},
        {"name": "syslog", "port": 514, "targetPort": 5514, "protocol": "UDP"}]}  # fmt: skip
    falco, raw = make({"services": [WEBHOOK, entry]})
    services = build_extra_services(falco, raw, BuildOptions())
    assert [s["metadata"]["name"] for s in services] == ["f-k8saudit", "f-ext"]
    assert services[1]["spec"] == {
        "type": "NodePort",
        "selector": selector_labels("f"),
        "ports": [{"name": "webhook", "port": 9765, "targetPort": "webhook", "protocol": "TCP", "nodePort": 30765},
                  {"name": "syslog", "port": 514, "targetPort": 5514, "protocol": "UDP"}],
    }  # fmt: skip


def test_extra_services_are_applied_after_the_headless_one_and_before_the_workload() -> None:
    falco, raw = make({"services": [WEBHOOK]})
    names = [(r.kind, obj["metadata"]["name"]) for r, obj in desired_objects(falco, raw, BuildOptions(), References())]
    assert names[-3:] == [("Service", "f"), ("Service", "f-k8saudit"), ("DaemonSet", "f")]
    bare, bare_raw = make()
    services = [obj["metadata"]["name"] for r, obj in desired_objects(bare, bare_raw, BuildOptions(), References())
                if r.kind == "Service"]  # fmt: skip
    assert services == ["f"]


def _live(name: str, uid: str = "uid-1", labels: dict[str, str] | None = None, controller: bool = True) -> Json:
    default = {**selector_labels("f"), "app.kubernetes.io/managed-by": "falco-operator", SERVICE_LABEL: "x"}
    return {"metadata": {"name": name, "uid": f"svc-{name}", "labels": default if labels is None else labels,
                         "ownerReferences": [{"uid": uid, "controller": controller}]}}  # fmt: skip


def test_only_unlisted_services_this_falco_controls_and_labelled_are_removed() -> None:
    headless = _live("f", labels={**selector_labels("f"), "app.kubernetes.io/managed-by": "falco-operator"})
    live = [
        headless,
        _live("f-kept"),
        _live("f-gone"),
        _live("f-other-owner", uid="uid-2"),
        _live("f-not-controller", controller=False),
        _live("f-helm", labels={**selector_labels("f"), "app.kubernetes.io/managed-by": "helm", SERVICE_LABEL: "x"}),
        _live(
            "f-other-instance",
            labels={**selector_labels("g"), "app.kubernetes.io/managed-by": "falco-operator", SERVICE_LABEL: "x"},
        ),
    ]
    removed = removable_services(live, "f", "uid-1", {"f-kept"})
    assert [s["metadata"]["name"] for s in removed] == ["f-gone"]


@pytest.mark.parametrize(
    "services",
    [
        [WEBHOOK, WEBHOOK] * 5,  # more than 8
        [{"name": "Upper", "ports": [{"name": "p", "port": 1}]}],
        [{"name": "a", "ports": []}],
        [{"name": "a", "type": "ExternalName", "ports": [{"name": "p", "port": 1}]}],
        [{"name": "a", "ports": [{"name": "p", "port": 70000}]}],
        [{"name": "a", "ports": [{"name": "p", "port": 1, "protocol": "ICMP"}]}],
    ],
)
def test_the_model_refuses_what_the_schema_refuses(services: list[Json]) -> None:
    with pytest.raises(ValidationError):
        make({"services": services})


def test_the_service_monitor_scrapes_the_headless_service_web_port_only() -> None:
    labels = {"release": "prom", "app.kubernetes.io/instance": "spoof"}
    settings = {"labels": labels, "interval": "30s", "scrapeTimeout": "10s"}
    falco, raw = make({"monitoring": {"serviceMonitor": settings}}, labels={"team": "blue"})
    assert wants_service_monitor(falco)
    monitor = build_service_monitor(falco, raw, BuildOptions())
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    assert monitor["metadata"]["name"] == "f"
    assert monitor["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    labels = monitor["metadata"]["labels"]
    assert labels["release"] == "prom"
    assert labels["team"] == "blue"
    assert labels["app.kubernetes.io/instance"] == "f", "the user's labels never replace the operator's"
    selector = monitor["spec"]["selector"]
    headless = build_service(falco, raw, BuildOptions())
    extra = build_extra_services(*make({"services": [WEBHOOK]}), BuildOptions())[0]
    for service, selected in ((headless, True), (extra, False)):
        service_labels = service["metadata"]["labels"]
        matches = all(service_labels.get(k) == v for k, v in selector["matchLabels"].items()) and all(
            e["key"] not in service_labels for e in selector["matchExpressions"] if e["operator"] == "DoesNotExist"
        )
        assert matches is selected
    assert monitor["spec"]["endpoints"] == [
        {"port": "web", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert {p["name"] for p in headless["spec"]["ports"]} == {"web"}


def test_no_monitor_is_wanted_without_the_field_and_an_empty_one_means_defaults() -> None:
    assert not wants_service_monitor(make()[0])
    assert not wants_service_monitor(make({"monitoring": {}})[0])
    falco, raw = make({"monitoring": {"serviceMonitor": {}}})
    assert wants_service_monitor(falco)
    assert build_service_monitor(falco, raw, BuildOptions())["spec"]["endpoints"] == [
        {"port": "web", "path": "/metrics"}
    ]


def _crd(established: str = "True", served: bool = True, deleting: bool = False) -> Json:
    metadata: Json = {"name": "servicemonitors.monitoring.coreos.com"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "spec": {"versions": [{"name": "v1", "served": served}]},
            "status": {"conditions": [{"type": "Established", "status": established}]}}  # fmt: skip


def test_service_monitors_are_served_only_by_an_established_crd_serving_v1() -> None:
    assert crd_serves_service_monitors(_crd())
    assert not crd_serves_service_monitors(None)
    assert not crd_serves_service_monitors(_crd(established="False"))
    assert not crd_serves_service_monitors(_crd(served=False))
    assert not crd_serves_service_monitors(_crd(deleting=True))


@pytest.mark.parametrize(
    "settings", [{"interval": "1.5s"}, {"interval": "30"}, {"scrapeTimeout": "1d"}, {"interval": "30s1m"}]
)
def test_monitor_durations_are_whole_units_in_decreasing_order(settings: Json) -> None:
    with pytest.raises(ValidationError):
        make({"monitoring": {"serviceMonitor": settings}})


def test_monitor_durations_prometheus_and_cel_both_read_are_accepted() -> None:
    for interval in ("30s", "1m", "1m30s", "1h", "500ms", "2m0s"):
        assert wants_service_monitor(make({"monitoring": {"serviceMonitor": {"interval": interval}}})[0])
