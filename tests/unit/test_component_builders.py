"""The objects built for each Component type: ports, probes, security, RBAC (exact), Redis, overrides, status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from falco_operator.api import Component
from falco_operator.component.builders import (
    ComponentOptions,
    build_cluster_role,
    build_cluster_role_binding,
    build_deployment,
    build_service,
    desired_objects,
    service_address,
    status_version,
)
from falco_operator.component.reconciler import redis_held_back
from falco_operator.instance.rbac import OPERATOR_RULES
from falco_operator.instance.status import desired_status, unreadable_status

Json = dict[str, Any]
SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
OPTIONS = ComponentOptions()
READ = ["get", "list", "watch"]


def component(type_: str, name: str = "c", **spec: Any) -> tuple[Component, Json]:
    raw: Json = {
        "apiVersion": "instance.falcosecurity.dev/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name, "namespace": "ns", "uid": "uid-1", "labels": {"team": "sec"}},
        "spec": {"component": {"type": type_}, **spec},
    }
    return Component.model_validate(raw), raw


def objects(type_: str, **spec: Any) -> dict[tuple[str, str], Json]:
    built, raw = component(type_, **spec)
    return {(obj["kind"], obj["metadata"]["name"]): obj for _, obj in desired_objects(built, raw, OPTIONS)}


def pod(deployment: Json) -> Json:
    spec: Json = deployment["spec"]["template"]["spec"]
    return spec


def only_container(deployment: Json) -> Json:
    containers: list[Json] = pod(deployment)["containers"]
    assert len(containers) == 1
    return containers[0]


def restricted(container: Json, pod_spec: Json, uid: int) -> None:
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod_spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
                                           "seccompProfile": {"type": "RuntimeDefault"}}  # fmt: skip


def test_metacollector_objects_ports_probes_and_security() -> None:
    built = objects("metacollector")
    assert sorted(built) == [("ClusterRole", "falco-component:ns:c"), ("ClusterRoleBinding", "falco-component:ns:c"),
                             ("Deployment", "c"), ("Service", "c"), ("ServiceAccount", "c")]  # fmt: skip
    deployment = built[("Deployment", "c")]
    container = only_container(deployment)
    assert container["image"] == "docker.io/falcosecurity/k8s-metacollector:0.1.3"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["/meta-collector", "run"]
    assert "args" not in container
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("broker-grpc", 45000), ("metrics", 8080), ("health-probe", 8081)]  # fmt: skip
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8081}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8081}
    restricted(container, pod(deployment), 1000)
    assert pod(deployment)["automountServiceAccountToken"] is True  # it watches the API server
    assert pod(deployment)["serviceAccountName"] == "c"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "metacollector",
                                                             "app.kubernetes.io/instance": "c"}  # fmt: skip
    assert deployment["metadata"]["labels"]["team"] == "sec"
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("Component", "c", "uid-1", True)
    service = built[("Service", "c")]
    assert service["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("broker-grpc", 45000, "broker-grpc"), ("metrics", 8080, "metrics")]  # fmt: skip
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_metacollector_rbac_is_exactly_read_on_what_it_collects() -> None:
    built, _ = component("metacollector")
    role = build_cluster_role(built, OPTIONS)
    assert role["rules"] == [
        {"apiGroups": ["apps"], "resources": ["daemonsets", "deployments", "replicasets"], "verbs": READ},
        {"apiGroups": [""], "resources": ["endpoints", "namespaces", "pods", "replicationcontrollers", "services"],
         "verbs": READ},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
    ]  # fmt: skip
    labels = role["metadata"]["labels"]
    assert "team" not in labels, "a user's label on a ClusterRole could join it to an aggregated role"
    assert labels["instance.falcosecurity.dev/component-namespace"] == "ns"
    assert labels["instance.falcosecurity.dev/component-name"] == "c"
    assert "instance.falcosecurity.dev/falco-name" not in labels
    binding = build_cluster_role_binding(built, ComponentOptions(crd_uid="crd-uid"))
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "falco-component:ns:c"}  # fmt: skip
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "c", "namespace": "ns"}]
    assert binding["metadata"]["ownerReferences"][0]["name"] == "components.instance.falcosecurity.dev"


def test_the_operator_holds_every_permission_it_grants_the_metacollector() -> None:
    """RBAC refuses a ClusterRole that grants more than its creator holds (escalation)."""
    built, _ = component("metacollector")
    held = {(group, resource, verb) for rule in OPERATOR_RULES if not rule.get("resourceNames")
            for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}  # fmt: skip
    for rule in build_cluster_role(built, OPTIONS)["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert (group, resource, verb) in held, (group, resource, verb)


def test_metacollector_tls_serves_the_broker_with_the_secret() -> None:
    tls = {"secretRef": {"name": "collector-tls"}, "caBundle": {"configMapRef": {"name": "ca"}}}
    deployment = objects("metacollector", metacollector={"tls": tls})[("Deployment", "c")]
    container = only_container(deployment)
    assert container["args"] == ["--broker-server-cert=/etc/metacollector/tls/tls.crt",
                                 "--broker-server-key=/etc/metacollector/tls/tls.key"]  # fmt: skip
    assert {"name": "broker-tls", "mountPath": "/etc/metacollector/tls", "readOnly": True} in container["volumeMounts"]
    assert pod(deployment)["volumes"] == [{"name": "broker-tls", "secret": {"secretName": "collector-tls"}}]


@pytest.mark.parametrize(("type_", "port", "path", "image"), [
    ("falcosidekick", 2801, "/ping", "docker.io/falcosecurity/falcosidekick:2.32.0"),
    ("falcosidekick-ui", 2802, "/api/v1/healthz", "docker.io/falcosecurity/falcosidekick-ui:2.2.0"),
])  # fmt: skip
def test_sidekick_and_ui_have_no_api_access(type_: str, port: int, path: str, image: str) -> None:
    built = objects(type_)
    assert not [key for key in built if key[0].startswith("Cluster")]
    assert built[("ServiceAccount", "c")]["automountServiceAccountToken"] is False
    deployment = built[("Deployment", "c")]
    assert pod(deployment)["automountServiceAccountToken"] is False
    container = only_container(deployment)
    assert container["image"] == image
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": path, "port": port}
    restricted(container, pod(deployment), 1234)
    service = built[("Service", "c")]
    assert service["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]


def test_sidekick_outputs_from_a_secret_and_events_to_the_ui() -> None:
    container = only_container(objects("falcosidekick", falcosidekick={
        "configSecretRef": {"name": "outputs"}, "webUI": {"name": "ui"}})[("Deployment", "c")])  # fmt: skip
    assert container["envFrom"] == [{"secretRef": {"name": "outputs"}}]
    assert container["env"] == [{"name": "WEBUI_URL", "value": "http://ui.ns.svc:2802"}]
    plain = only_container(objects("falcosidekick")[("Deployment", "c")])
    assert "env" not in plain
    assert "envFrom" not in plain


def test_ui_deploys_its_redis_with_redisearch() -> None:
    built = objects("falcosidekick-ui")
    assert sorted(built) == [("Deployment", "c"), ("Deployment", "c-redis"), ("Service", "c"), ("Service", "c-redis"),
                             ("ServiceAccount", "c")]  # fmt: skip
    assert only_container(built[("Deployment", "c")])["args"] == ["-r", "c-redis.ns.svc:6379"]
    redis = built[("Deployment", "c-redis")]
    container = only_container(redis)
    assert container["image"] == "docker.io/redis/redis-stack-server:7.2.0-v11"
    assert container["readinessProbe"]["tcpSocket"] == {"port": 6379}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod(redis)["securityContext"]["runAsNonRoot"] is True
    assert pod(redis)["automountServiceAccountToken"] is False
    assert pod(redis)["volumes"] == [{"name": "data", "emptyDir": {}}]
    assert redis["spec"]["strategy"] == {"type": "Recreate"}
    assert redis["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "redis",
                                                        "app.kubernetes.io/instance": "c"}  # fmt: skip
    assert redis["metadata"]["ownerReferences"][0]["kind"] == "Component"
    service = built[("Service", "c-redis")]
    assert service["spec"]["selector"] == redis["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 6379


def test_ui_redis_storage_and_password() -> None:
    redis = {"storage": {"size": "2Gi", "storageClassName": "fast"}, "passwordSecretRef": {"name": "redis-pw"}}
    built = objects("falcosidekick-ui", falcosidekickUI={"redis": redis})
    claim = built[("PersistentVolumeClaim", "c-redis")]
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}},
                             "storageClassName": "fast"}  # fmt: skip
    redis_pod = pod(built[("Deployment", "c-redis")])
    assert redis_pod["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "c-redis"}}]
    env = only_container(built[("Deployment", "c-redis")])["env"]
    assert env == [
        {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "redis-pw", "key": "password"}}},
        {"name": "REDIS_ARGS", "value": "--requirepass $(REDIS_PASSWORD)"},
    ]
    ui_env = only_container(built[("Deployment", "c")])["env"]
    assert ui_env == [{"name": "FALCOSIDEKICK_UI_REDIS_PASSWORD",
                       "valueFrom": {"secretKeyRef": {"name": "redis-pw", "key": "password"}}}]  # fmt: skip


def test_ui_with_its_own_redis_gets_none_deployed() -> None:
    built = objects("falcosidekick-ui", falcosidekickUI={"redis": {"address": "my-redis.db:6380"}})
    assert sorted(built) == [("Deployment", "c"), ("Service", "c"), ("ServiceAccount", "c")]
    assert only_container(built[("Deployment", "c")])["args"] == ["-r", "my-redis.db:6380"]


def test_pod_template_spec_is_merged_like_a_falcos() -> None:
    overlay = {"spec": {"containers": [{"name": "falcosidekick", "image": "mirror.example/sidekick:9.9",
                                        "env": [{"name": "DEBUG", "value": "true"}]}],
                        "nodeSelector": {"pool": "tools"}}}  # fmt: skip
    built, raw = component("falcosidekick", falcosidekick={"webUI": {"name": "ui"}}, podTemplateSpec=overlay,
                           replicas=0, strategy={"type": "Recreate"})  # fmt: skip
    deployment = build_deployment(built, raw, OPTIONS)
    container = only_container(deployment)
    assert container["image"] == "mirror.example/sidekick:9.9"
    assert [e["name"] for e in container["env"]] == ["WEBUI_URL", "DEBUG"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ping"
    assert pod(deployment)["nodeSelector"] == {"pool": "tools"}
    assert deployment["spec"]["replicas"] == 0, "0 is a choice, not unset"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert status_version(built) == "9.9"
    versioned, _ = component("falcosidekick", component={"type": "falcosidekick", "version": "2.30.0"})
    assert status_version(versioned) == "2.30.0"


@pytest.mark.parametrize(("type_", "address"), [
    ("metacollector", "c.ns.svc:45000"), ("falcosidekick", "c.ns.svc:2801"), ("falcosidekick-ui", "c.ns.svc:2802"),
])  # fmt: skip
def test_the_service_is_named_after_the_component(type_: str, address: str) -> None:
    built, raw = component(type_)
    assert build_service(built, raw, OPTIONS)["metadata"]["name"] == "c"
    assert service_address(built) == address


def _deployment(desired: int, available: int) -> Json:
    status = {"observedGeneration": 1, "availableReplicas": available, "updatedReplicas": desired}
    return {"metadata": {"generation": 1}, "spec": {"replicas": desired}, "status": status}


def test_a_ui_is_available_only_with_its_redis() -> None:
    def available(redis: Json | None) -> Json:
        status = desired_status(kind="Deployment", workload=_deployment(1, 1), version="2.2.0", error=None,
                                generation=1, old=None, now="2026-01-01T00:00:00Z",
                                held_back=redis_held_back(redis),
                                extra_fields={"service": "c.ns.svc:2802"})  # fmt: skip
        assert status["service"] == "c.ns.svc:2802"
        assert "artifacts" not in status
        return next(c for c in status["conditions"] if c["type"] == "Available")

    assert (available(None)["status"], available(None)["reason"]) == ("False", "RedisUnavailable")
    assert available(_deployment(1, 0))["status"] == "False"
    assert "0/1" in available(_deployment(1, 0))["message"]
    assert (available(_deployment(1, 1))["status"], available(_deployment(1, 1))["reason"]) == ("True", "PodsAvailable")


@pytest.mark.parametrize("sample", ["11-component-metacollector.yaml", "12-component-falcosidekick.yaml",
                                    "13-component-falcosidekick-ui.yaml"])  # fmt: skip
def test_samples_are_components_of_each_type(sample: str) -> None:
    document = YAML(typ="safe").load((SAMPLES / sample).read_text())
    parsed = Component.model_validate({**document, "metadata": {**document["metadata"], "namespace": "ns"}})
    assert parsed.spec.type == document["metadata"]["name"]


def test_an_unreadable_spec_keeps_the_status_and_says_why() -> None:
    old = {"version": "2.2.0", "conditions": [
        {"type": "Available", "status": "True", "reason": "PodsAvailable", "message": "1/1 pods available",
         "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}  # fmt: skip
    status = unreadable_status(old, "the operator cannot read this Component: bad", 2, "2026-01-02T00:00:00Z")
    assert status["version"] == "2.2.0"
    assert status["conditions"][0] == old["conditions"][0]
    reconciled = status["conditions"][1]
    assert (reconciled["type"], reconciled["status"], reconciled["reason"]) == ("Reconciled", "False", "InvalidSpec")
    assert (reconciled["observedGeneration"], reconciled["lastTransitionTime"]) == (2, "2026-01-02T00:00:00Z")
    assert unreadable_status(status, reconciled["message"], 2, "2026-01-03T00:00:00Z") == status, "no churn"
