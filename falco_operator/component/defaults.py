"""What each Component type runs: image, ports, probes, user, API access. One table; the builders read it.

Versions are the ones the falcosecurity charts pin (k8s-metacollector chart 0.3.1, falcosidekick chart 0.14.0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api import ComponentType

Json = dict[str, Any]
READ = ["get", "list", "watch"]

METACOLLECTOR_RULES: tuple[Json, ...] = (
    {"apiGroups": ["apps"], "resources": ["daemonsets", "deployments", "replicasets"], "verbs": READ},
    {"apiGroups": [""], "resources": ["endpoints", "namespaces", "pods", "replicationcontrollers", "services"],
     "verbs": READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
)  # fmt: skip
"""What the k8s-metacollector watches to tell Falco about pods and their owners, cluster-wide, read only."""


@dataclass(frozen=True)
class Port:
    name: str
    number: int


@dataclass(frozen=True)
class TypeDefaults:
    container: str
    """Name of the main container (a podTemplateSpec entry of that name overrides it)."""
    repository: str
    version: str
    ports: tuple[Port, ...]
    """Container ports; the first is the one others talk to (``status.service``)."""
    service_ports: tuple[str, ...]
    """Names of the ports the Service exposes, the first first."""
    liveness_path: str
    readiness_path: str
    probe_port: int
    user: int
    """The image's user (the charts' runAsUser): the pod runs as it, never as root."""
    command: tuple[str, ...] = ()
    cluster_rules: tuple[Json, ...] = field(default=())
    """Cluster-wide read access; empty: the pods get no API credentials at all."""

    @property
    def api_access(self) -> bool:
        return bool(self.cluster_rules)

    @property
    def service_port(self) -> Port:
        return next(port for port in self.ports if port.name == self.service_ports[0])


METACOLLECTOR_GRPC_PORT = 45000
SIDEKICK_PORT = 2801
UI_PORT = 2802

DEFAULTS: dict[ComponentType, TypeDefaults] = {
    "metacollector": TypeDefaults(
        container="metacollector",
        repository="docker.io/falcosecurity/k8s-metacollector",
        version="0.1.3",
        ports=(Port("broker-grpc", METACOLLECTOR_GRPC_PORT), Port("metrics", 8080), Port("health-probe", 8081)),
        service_ports=("broker-grpc", "metrics"),
        liveness_path="/healthz",
        readiness_path="/readyz",
        probe_port=8081,
        user=1000,
        command=("/meta-collector", "run"),
        cluster_rules=METACOLLECTOR_RULES,
    ),
    "falcosidekick": TypeDefaults(
        container="falcosidekick",
        repository="docker.io/falcosecurity/falcosidekick",
        version="2.32.0",
        ports=(Port("http", SIDEKICK_PORT),),
        service_ports=("http",),
        liveness_path="/ping",
        readiness_path="/ping",
        probe_port=SIDEKICK_PORT,
        user=1234,
    ),
    "falcosidekick-ui": TypeDefaults(
        container="falcosidekick-ui",
        repository="docker.io/falcosecurity/falcosidekick-ui",
        version="2.2.0",
        ports=(Port("http", UI_PORT),),
        service_ports=("http",),
        liveness_path="/api/v1/healthz",
        readiness_path="/api/v1/healthz",
        probe_port=UI_PORT,
        user=1234,
    ),
}

# The Redis a falcosidekick-ui Component gets when it names none: with RediSearch, which the UI needs. The chart
# runs redis/redis-stack (the server plus the RedisInsight web app) at this tag; the server-only image suffices.
REDIS_IMAGE = "docker.io/redis/redis-stack-server:7.2.0-v11"
REDIS_PORT = 6379
REDIS_USER = 999
"""The redis user of the Redis images; the deployed Redis runs as it, not as root."""
REDIS_DATA_DIR = "/data"
DEFAULT_REQUESTS: Json = {"requests": {"cpu": "10m", "memory": "64Mi"}}
"""Requests only (canonical quantities, as the API server writes them back): no default limit to outgrow."""
