"""Resource descriptions (group, version, plural, scope) and a registry to look them up by kind."""

from __future__ import annotations

from urllib.parse import quote

from ..records import record


@record(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The REST path; ``namespace`` None on a namespaced resource means all namespaces (lists, watches)."""
        if self.namespaced and name is not None and not namespace:
            raise ValueError(f"{self.kind} {name!r} is namespaced: give its namespace")
        if not self.namespaced and namespace:
            raise ValueError(f"{self.kind} is cluster-scoped: no namespace")
        parts = ["/api", self.version] if not self.group else ["/apis", self.group, self.version]
        if namespace:
            parts += ["namespaces", quote(namespace, safe="")]
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
        if subresource:
            parts.append(subresource)
        return "/".join(parts)


def _core(kind: str, plural: str, namespaced: bool = True) -> Resource:
    return Resource("", "v1", kind, plural, namespaced)


CONFIG_MAPS = _core("ConfigMap", "configmaps")
SECRETS = _core("Secret", "secrets")
SERVICE_ACCOUNTS = _core("ServiceAccount", "serviceaccounts")
SERVICES = _core("Service", "services")
PODS = _core("Pod", "pods")
PERSISTENT_VOLUME_CLAIMS = _core("PersistentVolumeClaim", "persistentvolumeclaims")
NODES = _core("Node", "nodes", namespaced=False)
NAMESPACES = _core("Namespace", "namespaces", namespaced=False)
DAEMON_SETS = Resource("apps", "v1", "DaemonSet", "daemonsets", True)
DEPLOYMENTS = Resource("apps", "v1", "Deployment", "deployments", True)
ROLES = Resource("rbac.authorization.k8s.io", "v1", "Role", "roles", True)
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True)
CLUSTER_ROLES = Resource("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False)
CLUSTER_ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False)
LEASES = Resource("coordination.k8s.io", "v1", "Lease", "leases", True)
EVENTS = Resource("events.k8s.io", "v1", "Event", "events", True)
CUSTOM_RESOURCE_DEFINITIONS = Resource(
    "apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False
)

BUILTIN: tuple[Resource, ...] = (
    CONFIG_MAPS, SECRETS, SERVICE_ACCOUNTS, SERVICES, PODS, NODES, NAMESPACES, DAEMON_SETS, DEPLOYMENTS, ROLES,
    ROLE_BINDINGS, PERSISTENT_VOLUME_CLAIMS, CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS, LEASES, EVENTS,
)  # fmt: skip


class ResourceRegistry:
    """Maps (apiVersion, kind) to a Resource; starts with the core kinds, callers register their CRDs."""

    def __init__(self, resources: tuple[Resource, ...] = BUILTIN) -> None:
        self._by_kind: dict[tuple[str, str], Resource] = {}
        for resource in resources:
            self.register(resource)

    def register(self, resource: Resource) -> Resource:
        self._by_kind[(resource.api_version, resource.kind)] = resource
        return resource

    def for_kind(self, api_version: str, kind: str) -> Resource:
        try:
            return self._by_kind[(api_version, kind)]
        except KeyError:
            raise KeyError(f"unknown resource {kind} ({api_version}): register it first") from None

    def for_object(self, obj: dict[str, object]) -> Resource:
        return self.for_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
