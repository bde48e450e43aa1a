"""Operator-wide settings that shape the objects built for every Falco."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_FALCO_VERSION = "0.44.1"
FALCO_IMAGE_REPOSITORY = "docker.io/falcosecurity/falco"
DRIVER_LOADER_REPOSITORY = "docker.io/falcosecurity/falco-driver-loader"
# The operator and the agent share one image (two entry points); the manifests set it for both.
DEFAULT_AGENT_IMAGE = "falco-operator:0.1.0"
FIELD_MANAGER = "falco-operator"
FINALIZER = "instance.falcosecurity.dev/cluster-rbac"


@dataclass(frozen=True)
class BuildOptions:
    agent_image: str = DEFAULT_AGENT_IMAGE
    default_falco_version: str = DEFAULT_FALCO_VERSION
    native_sidecar: bool = True
    """Run the agent as an init container with restartPolicy Always (API servers 1.29 and later)."""
    excluded_labels: tuple[str, ...] = field(default=())
    """Globs of Falco labels not copied onto the objects built for it."""


def supports_native_sidecar(major: int, minor: int) -> bool:
    """Sidecar containers are on by default from Kubernetes 1.29."""
    return (major, minor) >= (1, 29)
