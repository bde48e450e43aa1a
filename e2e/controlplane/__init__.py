"""Build, start and stop a real Kubernetes control plane on loopback, for tests and the demo."""

from .build import KUBERNETES_VERSION, Binaries, ensure_binaries
from .cluster import ControlPlane, write_token_kubeconfig
from .launch import DEFAULT_NODES, start_cluster, start_node_simulator

__all__ = [
    "DEFAULT_NODES",
    "KUBERNETES_VERSION",
    "Binaries",
    "ControlPlane",
    "ensure_binaries",
    "start_cluster",
    "start_node_simulator",
    "write_token_kubeconfig",
]
