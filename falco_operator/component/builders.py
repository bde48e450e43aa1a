"""The objects of one Component: ServiceAccount, cluster RBAC (metacollector only), Deployment, Service, and for a
falcosidekick-ui without a Redis address the Redis it uses (Deployment, Service, optional PersistentVolumeClaim).

The pod template goes through the Falco's machinery: one merge of the user's podTemplateSpec over the default,
pull policies spelled out, the same owner metadata and labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api import Component
from ..api.component import KeyReference
from ..instance.merge import merge_pod_template
from ..instance.naming import object_labels, owned_metadata, selector_labels
from ..instance.options import COMPONENT_CRD
from ..instance.rbac import RBAC_GROUP
from ..instance.version import reported_version
from ..instance.workload import with_pull_policies
from ..kube import Resource
from ..kube.resources import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    DEPLOYMENTS,
    PERSISTENT_VOLUME_CLAIMS,
    SERVICE_ACCOUNTS,
    SERVICES,
)
from .defaults import (
    DEFAULT_REQUESTS,
    DEFAULTS,
    REDIS_DATA_DIR,
    REDIS_IMAGE,
    REDIS_PORT,
    REDIS_USER,
    UI_PORT,
    TypeDefaults,
)

Json = dict[str, Any]
# Cluster-scoped objects cannot carry an ownerReference to a namespaced Component: these labels lead back to it.
# Not the Falco's labels: the Falco controller must not take a Component's ClusterRole for a Falco's.
OWNER_NAMESPACE_LABEL = "instance.falcosecurity.dev/component-namespace"
OWNER_NAME_LABEL = "instance.falcosecurity.dev/component-name"
REDIS = "redis"
TLS_DIR = "/etc/metacollector/tls"
TLS_VOLUME = "broker-tls"
REDIS_PASSWORD_ENV = "REDIS_PASSWORD"
UI_REDIS_PASSWORD_ENV = "FALCOSIDEKICK_UI_REDIS_PASSWORD"


@dataclass(frozen=True)
class ComponentOptions:
    excluded_labels: tuple[str, ...] = field(default=())
    """Globs of Component labels not copied onto the objects built for it (the operator's --excluded-labels)."""
    crd_uid: str | None = None
    """UID of the Component CRD: owner of the per-Component cluster objects, so an uninstall removes them."""


def cluster_object_name(namespace: str, name: str) -> str:
    """``falco-component:<namespace>:<name>``: colons occur in neither part, so no two Components collide, and the
    prefix keeps them apart from a Falco's ``falco:<namespace>:<name>``."""
    return f"falco-component:{namespace}:{name}"


def redis_name(name: str) -> str:
    return f"{name}-{REDIS}"


def type_defaults(component: Component) -> TypeDefaults:
    return DEFAULTS[component.spec.type]


def deploys_redis(component: Component) -> bool:
    """A falcosidekick-ui with no Redis address gets one deployed next to it."""
    options = component.spec.falcosidekick_ui
    return component.spec.type == "falcosidekick-ui" and not (options and options.redis and options.redis.address)


def _metadata(component: Component, raw: Json, options: ComponentOptions, app: str | None = None) -> Json:
    metadata = component.metadata
    return owned_metadata(metadata.name or "", metadata.namespace or "", metadata.labels, options.excluded_labels,
                          raw, app or component.spec.type)  # fmt: skip


def _redis_metadata(component: Component, raw: Json, options: ComponentOptions) -> Json:
    # Labelled with the Component's name (the instance), named after its Redis.
    return _metadata(component, raw, options, REDIS) | {"name": redis_name(component.metadata.name or "")}


def user_container(component: Component, name: str) -> Json | None:
    spec = (component.spec.pod_template_spec or {}).get("spec") or {}
    for container in spec.get("containers") or []:
        if isinstance(container, dict) and container.get("name") == name:
            return container
    return None


def status_version(component: Component) -> str:
    """The image tag running (a user's image wins), or its digest when pinned by digest alone."""
    defaults = type_defaults(component)
    image = (user_container(component, defaults.container) or {}).get("image")
    return reported_version(image, component.spec.component.version, defaults.version)


def service_address(component: Component) -> str:
    """``<name>.<namespace>.svc:<port>``: where Falco and other Components reach it."""
    port = type_defaults(component).service_port.number
    return f"{component.metadata.name}.{component.metadata.namespace}.svc:{port}"


def restricted_container_context() -> Json:
    """Pod Security "restricted" for a container: no privilege, no capability, a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security_context(user: int) -> Json:
    return {"runAsNonRoot": True, "runAsUser": user, "runAsGroup": user, "fsGroup": user,
            "seccompProfile": {"type": "RuntimeDefault"}}  # fmt: skip


def _probe(path: str, port: int, period: int) -> Json:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": 3}


def _secret_env(name: str, reference: KeyReference, default_key: str) -> Json:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": reference.name, "key": reference.key or default_key}}}


def _redis_password(component: Component) -> KeyReference | None:
    options = component.spec.falcosidekick_ui
    return options.redis.password_secret_ref if options and options.redis else None


def redis_address(component: Component) -> str:
    options = component.spec.falcosidekick_ui
    if options and options.redis and options.redis.address:
        return options.redis.address
    return f"{redis_name(component.metadata.name or '')}.{component.metadata.namespace}.svc:{REDIS_PORT}"


def _type_settings(component: Component) -> tuple[list[str], list[Json], list[Json], list[Json], list[Json]]:
    """What one type adds to its container and pod: args, env, envFrom, volume mounts, volumes."""
    spec = component.spec
    args: list[str] = []
    env: list[Json] = []
    env_from: list[Json] = []
    mounts: list[Json] = []
    volumes: list[Json] = []
    if spec.type == "metacollector" and spec.metacollector and spec.metacollector.tls:
        args += [f"--broker-server-cert={TLS_DIR}/tls.crt", f"--broker-server-key={TLS_DIR}/tls.key"]
        mounts.append({"name": TLS_VOLUME, "mountPath": TLS_DIR, "readOnly": True})
        volumes.append({"name": TLS_VOLUME, "secret": {"secretName": spec.metacollector.tls.secret_ref.name}})
    elif spec.type == "falcosidekick" and spec.falcosidekick:
        if spec.falcosidekick.config_secret_ref:
            env_from.append({"secretRef": {"name": spec.falcosidekick.config_secret_ref.name}})
        if spec.falcosidekick.web_ui:
            url = f"http://{spec.falcosidekick.web_ui.name}.{component.metadata.namespace}.svc:{UI_PORT}"
            env.append({"name": "WEBUI_URL", "value": url})
    elif spec.type == "falcosidekick-ui":
        args += ["-r", redis_address(component)]
        password = _redis_password(component)
        if password:
            env.append(_secret_env(UI_REDIS_PASSWORD_ENV, password, "password"))
    return args, env, env_from, mounts, volumes


def main_container(component: Component) -> Json:
    defaults = type_defaults(component)
    args, env, env_from, mounts, _ = _type_settings(component)
    container: Json = {
        "name": defaults.container,
        "image": f"{defaults.repository}:{component.spec.component.version or defaults.version}",
        "ports": [{"name": p.name, "containerPort": p.number, "protocol": "TCP"} for p in defaults.ports],
        "livenessProbe": _probe(defaults.liveness_path, defaults.probe_port, 15),
        "readinessProbe": _probe(defaults.readiness_path, defaults.probe_port, 10),
        "resources": DEFAULT_REQUESTS,
        "securityContext": restricted_container_context(),
    }
    if defaults.command:
        container["command"] = list(defaults.command)
    for key, value in (("args", args), ("env", env), ("envFrom", env_from), ("volumeMounts", mounts)):
        if value:
            container[key] = value
    return container


def default_pod_template(component: Component) -> Json:
    defaults = type_defaults(component)
    name = component.metadata.name or ""
    spec: Json = {
        "serviceAccountName": name,
        # Only the metacollector talks to the API server; sidekick and its UI get no credentials at all.
        "automountServiceAccountToken": defaults.api_access,
        "securityContext": pod_security_context(defaults.user),
        "containers": [main_container(component)],
    }
    volumes = _type_settings(component)[4]
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": {"labels": selector_labels(name, component.spec.type)}, "spec": spec}


def build_pod_template(component: Component) -> Json:
    return with_pull_policies(merge_pod_template(default_pod_template(component),
                                                 component.spec.pod_template_spec or {}))  # fmt: skip


def build_deployment(component: Component, raw: Json, options: ComponentOptions) -> Json:
    name = component.metadata.name or ""
    replicas = component.spec.replicas
    spec: Json = {
        "replicas": 1 if replicas is None else replicas,
        "selector": {"matchLabels": selector_labels(name, component.spec.type)},
        "template": build_pod_template(component),
    }
    if component.spec.strategy:
        spec["strategy"] = component.spec.strategy.to_wire()
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(component, raw, options),
            "spec": spec}  # fmt: skip


def build_service(component: Component, raw: Json, options: ComponentOptions) -> Json:
    defaults = type_defaults(component)
    by_name = {port.name: port for port in defaults.ports}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(component, raw, options),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(component.metadata.name or "", component.spec.type),
            "ports": [{"name": name, "port": by_name[name].number, "targetPort": name, "protocol": "TCP"}
                      for name in defaults.service_ports],
        },
    }  # fmt: skip


def build_service_account(component: Component, raw: Json, options: ComponentOptions) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(component, raw, options),
        "automountServiceAccountToken": type_defaults(component).api_access,
    }


def _cluster_metadata(component: Component, options: ComponentOptions) -> Json:
    # Only the operator's own labels: a user's label on a ClusterRole could join it to an aggregated role.
    namespace, name = component.metadata.namespace or "", component.metadata.name or ""
    labels = object_labels(name, None, (), component.spec.type)
    labels |= {OWNER_NAMESPACE_LABEL: namespace, OWNER_NAME_LABEL: name}
    metadata: Json = {"name": cluster_object_name(namespace, name), "labels": labels}
    if options.crd_uid:
        metadata["ownerReferences"] = [{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                                        "name": COMPONENT_CRD, "uid": options.crd_uid}]  # fmt: skip
    return metadata


def build_cluster_role(component: Component, options: ComponentOptions) -> Json:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": _cluster_metadata(component, options),
        "rules": [dict(rule) for rule in type_defaults(component).cluster_rules],
    }


def build_cluster_role_binding(component: Component, options: ComponentOptions) -> Json:
    metadata = _cluster_metadata(component, options)
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": metadata,
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": metadata["name"]},
        "subjects": [{"kind": "ServiceAccount", "name": component.metadata.name,
                      "namespace": component.metadata.namespace}],
    }  # fmt: skip


def _redis_storage(component: Component) -> Json | None:
    options = component.spec.falcosidekick_ui
    storage = options.redis.storage if options and options.redis else None
    if storage is None:
        return None
    spec: Json = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage.size}}}
    if storage.storage_class_name:
        spec["storageClassName"] = storage.storage_class_name
    return spec


def build_redis_claim(component: Component, raw: Json, options: ComponentOptions) -> Json | None:
    spec = _redis_storage(component)
    if spec is None:
        return None
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _redis_metadata(component, raw, options), "spec": spec}  # fmt: skip


def redis_container(component: Component) -> Json:
    container: Json = {
        "name": REDIS,
        "image": REDIS_IMAGE,
        "ports": [{"name": REDIS, "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "livenessProbe": {"tcpSocket": {"port": REDIS_PORT}, "periodSeconds": 15, "failureThreshold": 3},
        "readinessProbe": {"tcpSocket": {"port": REDIS_PORT}, "periodSeconds": 10, "failureThreshold": 3},
        "resources": DEFAULT_REQUESTS,
        # Redis writes only under /data (a volume); its start script may write elsewhere: a writable root.
        "securityContext": {**restricted_container_context(), "readOnlyRootFilesystem": False},
        "volumeMounts": [{"name": "data", "mountPath": REDIS_DATA_DIR}],
    }
    password = _redis_password(component)
    if password:
        container["env"] = [
            _secret_env(REDIS_PASSWORD_ENV, password, "password"),
            {"name": "REDIS_ARGS", "value": f"--requirepass $({REDIS_PASSWORD_ENV})"},
        ]
    return container


def build_redis_deployment(component: Component, raw: Json, options: ComponentOptions) -> Json:
    name = component.metadata.name or ""
    claim = _redis_storage(component) is not None
    volume: Json = (
        {"name": "data", "persistentVolumeClaim": {"claimName": redis_name(name)}}
        if claim
        else {"name": "data", "emptyDir": {}}
    )
    pod: Json = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(REDIS_USER),
        "containers": [redis_container(component)],
        "volumes": [volume],
    }
    template = with_pull_policies({"metadata": {"labels": selector_labels(name, REDIS)}, "spec": pod})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _redis_metadata(component, raw, options),
        # One Redis; Recreate, so a ReadWriteOnce claim is never wanted by two pods at once.
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": selector_labels(name, REDIS)}, "template": template},
    }  # fmt: skip


def build_redis_service(component: Component, raw: Json, options: ComponentOptions) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _redis_metadata(component, raw, options),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(component.metadata.name or "", REDIS),
            "ports": [{"name": REDIS, "port": REDIS_PORT, "targetPort": REDIS, "protocol": "TCP"}],
        },
    }


def desired_objects(component: Component, raw: Json, options: ComponentOptions) -> list[tuple[Resource, Json]]:
    """Everything one Component needs, in the order it is applied (identity and RBAC before the pods)."""
    objects: list[tuple[Resource, Json]] = [(SERVICE_ACCOUNTS, build_service_account(component, raw, options))]
    if type_defaults(component).api_access:
        objects += [(CLUSTER_ROLES, build_cluster_role(component, options)),
                    (CLUSTER_ROLE_BINDINGS, build_cluster_role_binding(component, options))]  # fmt: skip
    if deploys_redis(component):
        claim = build_redis_claim(component, raw, options)
        if claim is not None:
            objects.append((PERSISTENT_VOLUME_CLAIMS, claim))
        objects += [(DEPLOYMENTS, build_redis_deployment(component, raw, options)),
                    (SERVICES, build_redis_service(component, raw, options))]  # fmt: skip
    objects += [(SERVICES, build_service(component, raw, options)),
                (DEPLOYMENTS, build_deployment(component, raw, options))]  # fmt: skip
    return objects
