"""Operator-wide settings that shape the objects built for every Falco."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_FALCO_VERSION = "0.44.1"
FALCO_IMAGE_REPOSITORY = "docker.io/falcosecurity/falco"
DRIVER_LOADER_REPOSITORY = "docker.io/falcosecurity/falco-driver-loader"
# The operator and the agent share one image (two entry points); the manifests set it for both.
DEFAULT_AGENT_IMAGE = "falco-operator:0.1.0"
FIELD_MANAGER = "falco-operator"
# Earlier versions held each Falco with this finalizer; the operator now removes it wherever it finds it.
LEGACY_FINALIZER = "instance.falcosecurity.dev/cluster-rbac"
FALCO_CRD = "falcos.instance.falcosecurity.dev"
COMPONENT_CRD = "components.instance.falcosecurity.dev"


@dataclass(frozen=True)
class BuildOptions:
    agent_image: str = DEFAULT_AGENT_IMAGE
    default_falco_version: str = DEFAULT_FALCO_VERSION
    native_sidecar: bool = True
    """Run the agent as an init container with restartPolicy Always (API servers 1.29 and later)."""
    excluded_labels: tuple[str, ...] = field(default=())
    """Globs of Falco labels not copied onto the objects built for it."""
    allow_private_registries: bool = False
    """Let the agents reach registries and token services at loopback, link-local and private addresses (a
    registry inside the cluster); off, they reach only public addresses."""
    falco_crd_uid: str | None = None
    """UID of the Falco CRD: the per-Falco cluster-scoped objects name it as their owner, so deleting the CRD
    (uninstalling) lets garbage collection remove them even when no operator runs any more."""


def supports_native_sidecar(major: int, minor: int) -> bool:
    """Sidecar containers are on by default from Kubernetes 1.29."""
    return (major, minor) >= (1, 29)
