"""The local control plane with a real node, as the ``PodCluster`` the real-pod scenarios run on."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from e2e.controlplane.cluster import STATE_FILE, ControlPlane
from e2e.registry import Registry, start_registry
from e2e.scenarios.install import INSTALL
from e2e.scenarios.realpods import PodRegistry, get_json

from .build import ensure_node_binaries
from .images import ensure_images
from .node import RealNode, start_cluster_with_real_node

# The image names install.yaml and the operator's defaults use: the local images are imported under them.
PRODUCT_IMAGE = "falco-operator:0.1.0"


@dataclass
class LocalPodCluster:
    plane: ControlPlane
    node: RealNode
    workdir: Path
    modern_ebpf: str | None = None
    _registry: Registry | None = field(default=None, repr=False)

    @property
    def nodes(self) -> tuple[str, ...]:
        return (self.node.name,)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, stdin=stdin, check=check)

    def kubectl_argv(self) -> list[str]:
        return [str(self.plane.binaries.path("kubectl")), f"--kubeconfig={self.plane.kubeconfig}"]

    def install_text(self) -> str:
        return INSTALL.read_text()

    def pod_get(self, namespace: str, pod: str, port: int, path: str) -> str:
        """Straight to the pod's IP, as a node's neighbour would: the host routes the pod network."""
        ip = get_json(self.kubectl, "pod", "-n", namespace, pod)["status"]["podIP"]
        with urllib.request.urlopen(f"http://{ip}:{port}{path}", timeout=5) as response:
            return str(response.read().decode())

    def kill_container(self, namespace: str, pod: str, container: str) -> None:
        status = get_json(self.kubectl, "pod", "-n", namespace, pod)["status"]
        entries = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
        (container_id,) = [e["containerID"] for e in entries if e["name"] == container]
        self.node.ctr("tasks", "kill", "-s", "SIGKILL", container_id.removeprefix("containerd://"))

    def restart_runtime(self) -> None:
        self.node.restart_runtime()

    def registry(self) -> PodRegistry:
        """A plain-HTTP registry on the node's address: pods reach it through the bridge's gateway route."""
        if self._registry is None:
            self._registry = start_registry(self.workdir / "registry", tls=False, auth=False, address=self.node.ip)
        return PodRegistry(self._registry.host, self._registry)

    def close(self) -> None:
        if self._registry is not None:
            self._registry.stop()


def modern_ebpf_unavailable() -> str | None:
    """Why Falco cannot run ``modern_ebpf`` on this machine's node, or None when it can: the probe is CO-RE and
    needs the kernel's BTF; the Falco test image is built with the probe."""
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "the kernel exposes no BTF (/sys/kernel/btf/vmlinux), which the CO-RE modern eBPF probe needs"
    return None


@contextlib.contextmanager
def local_pod_cluster(directory: Path) -> Iterator[LocalPodCluster]:
    """The control plane and the real node ``real1``, state in ``directory``; everything stopped and the host
    checked clean afterwards (an AssertionError names what was left)."""
    binaries, images = ensure_node_binaries(), ensure_images()
    if (directory / "cp" / STATE_FILE).exists():  # a run that was killed: its processes may still be there
        ControlPlane.attach(directory / "cp").stop()
    shutil.rmtree(directory / "cp", ignore_errors=True)
    plane, node = start_cluster_with_real_node(directory, binaries, images)
    local = LocalPodCluster(plane, node, directory, modern_ebpf=modern_ebpf_unavailable())
    try:
        yield local
    finally:
        local.close()
        node.stop()
        left = node.leftovers()
        plane.stop()
        assert not left, f"the real node left these on the host: {left}"
