"""A real node joined to the local control plane: containerd, kubelet and kube-proxy as harness processes.

``start_cluster_with_real_node`` brings up a control plane whose API server pods and kubelets can use, then the
node; ``RealNode.stop`` tears the pods down through the kubelet where it can, and then undoes every host change
(``host.py``), so a test machine keeps no mounts, cgroups, interfaces, iptables rules or processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from e2e.controlplane.cluster import ControlPlane, write_kubeconfig
from e2e.controlplane.pki import KeyPair, issue_client

from . import host
from .build import NodeBinaries
from .config import (
    NodeLayout,
    apiserver_args,
    cni_config,
    containerd_config,
    kube_proxy_config,
    kubelet_command,
    kubelet_config,
)

CONTAINERD, KUBELET, KUBE_PROXY = "containerd", "kubelet", "kube-proxy"
# ClusterRoles the API server ships; without a Node authorizer the node's identities get them by RBAC.
IDENTITIES = (
    # (binding name, user, ClusterRole)
    ("e2e-apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:kubelet-api-admin"),
    ("e2e-kube-proxy", "system:kube-proxy", "system:node-proxier"),
)


def _log(message: str) -> None:
    print(f"[realnode] {message}", file=sys.stderr, flush=True)


@dataclass
class RealNode:
    plane: ControlPlane
    binaries: NodeBinaries
    layout: NodeLayout
    ip: str
    images: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.layout.name

    # --- start ---------------------------------------------------------------------------------------------

    def start(self, *, timeout: float = 120.0) -> None:
        started = time.monotonic()
        self.clean_host()
        host.enable_pod_routing(self.layout)
        self._write_configs()
        self._grant_identities()
        self.start_containerd()
        for archive in self.images:
            began = time.monotonic()
            self.ctr("images", "import", str(archive))
            _log(f"imported {archive.name} in {time.monotonic() - began:.1f}s")
        self.start_kubelet()
        self.plane.add_process(
            KUBE_PROXY, [str(self.binaries.path("kube-proxy")), f"--config={self.layout.kube_proxy_config}"]
        )
        self.wait_ready(timeout=timeout)
        _log(f"node {self.name} Ready at {self.ip} in {time.monotonic() - started:.1f}s")

    def _write_configs(self) -> None:
        layout = self.layout
        pki = layout.pki
        ca = KeyPair(self.plane.ca_file, self.plane.ca_file.with_suffix(".key"))
        node_identity = issue_client(pki, ca, "kubelet", f"system:node:{self.name}", "system:nodes")
        proxy_identity = issue_client(pki, ca, "kube-proxy", "system:kube-proxy")
        write_kubeconfig(layout.root / "kubelet.kubeconfig", self.plane.server, self.plane.ca_file, node_identity)
        write_kubeconfig(layout.root / "kube-proxy.kubeconfig", self.plane.server, self.plane.ca_file, proxy_identity)
        files = {
            layout.containerd_config: containerd_config(layout, self.binaries.path("runc"), self.binaries.cni_dir),
            layout.cni_conf_dir / "10-pods.conflist": json.dumps(cni_config(layout), indent=2),
            layout.kubelet_config: json.dumps(kubelet_config(layout, self.plane.ca_file), indent=2),
            layout.kube_proxy_config: json.dumps(
                kube_proxy_config(layout, layout.root / "kube-proxy.kubeconfig"), indent=2
            ),
        }
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def _grant_identities(self) -> None:
        bindings = list(IDENTITIES)
        bindings.append((f"e2e-node-{self.name}", f"system:node:{self.name}", "system:node"))
        documents = [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            }
            for name, user, role in bindings
        ]
        self.plane.kubectl("apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in documents))

    def start_containerd(self) -> None:
        containerd = self.binaries.path("containerd")
        env = {"PATH": f"{containerd.parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        if not self.plane.is_running(CONTAINERD) and self.ctr("version", check=False).returncode == 0:
            raise RuntimeError(f"another containerd serves {self.layout.containerd_socket}; stop it first")
        self.layout.containerd_socket.unlink(missing_ok=True)
        self.layout.containerd_socket.parent.mkdir(parents=True, exist_ok=True)
        self.plane.add_process(CONTAINERD, [str(containerd), f"--config={self.layout.containerd_config}"], env=env)
        deadline = time.monotonic() + 30
        while self.ctr("version", check=False).returncode != 0:
            if not self.plane.is_running(CONTAINERD) or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start; see {self._log_path(CONTAINERD)}")
            time.sleep(0.1)

    def start_kubelet(self) -> None:
        command = kubelet_command(
            self.binaries.path("kubelet"), self.layout, self.layout.root / "kubelet.kubeconfig", self.ip
        )
        self.plane.add_process(KUBELET, command)

    def wait_ready(self, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        jsonpath = '{.status.conditions[?(@.type=="Ready")].status}'
        while True:
            result = self.plane.kubectl("get", "node", self.name, "-o", f"jsonpath={jsonpath}", check=False)
            if result.stdout.strip() == "True":
                return
            for component in (CONTAINERD, KUBELET):
                if not self.plane.is_running(component):
                    raise RuntimeError(f"{component} exited; see {self._log_path(component)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {self.name} not Ready within {timeout:.0f}s; see {self._log_path(KUBELET)}")
            time.sleep(0.3)

    # --- faults ----------------------------------------------------------------------------------------------

    def restart_runtime(self) -> None:
        """Stop and start containerd and the kubelet, as a node's runtime upgrade or a crash does; pods keep
        running in their shims meanwhile."""
        self.plane.stop_component(KUBELET)
        self.plane.stop_component(CONTAINERD)
        self.start_containerd()
        self.start_kubelet()
        self.wait_ready(timeout=120)

    # --- stop ------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        started = time.monotonic()
        if self.plane.is_running(KUBELET) and self.plane.is_running(CONTAINERD):
            self._drain()
        self.plane.stop_component(KUBE_PROXY)
        self.plane.stop_component(KUBELET)
        if self.plane.is_running(CONTAINERD):
            self._remove_containers()
        self.plane.stop_component(CONTAINERD)
        self.clean_host()
        _log(f"node {self.name} stopped and host cleaned in {time.monotonic() - started:.1f}s")

    def _drain(self, timeout: float = 30.0) -> None:
        """Let the kubelet stop this node's pods (CNI teardown, unmounts) while the API server is up. DaemonSet
        pods may come back meanwhile; what is left is removed by force afterwards."""
        selector = f"spec.nodeName={self.name}"
        self.plane.kubectl("delete", "pods", "-A", "--field-selector", selector, "--grace-period=5", "--wait=false",
                           check=False)  # fmt: skip
        deadline = time.monotonic() + timeout
        while self.ctr("tasks", "ls", "-q", check=False).stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.5)

    def _remove_containers(self) -> None:
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "delete", "-f", task, check=False)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)

    def clean_host(self) -> None:
        """Undo everything this node may have left on the host (also what a killed run left)."""
        host.remove_kubepods_cgroups()
        host.kill_all(host.shims_of(self.layout))
        host.unmount_under(self.layout.root)
        host.remove_pod_network_namespaces()
        host.remove_bridge(self.layout)
        proxy = self.binaries.path("kube-proxy")
        if self.layout.kube_proxy_config.exists():
            host.run(str(proxy), "--cleanup", f"--config={self.layout.kube_proxy_config}")
        host.remove_cni_masquerade(self.layout)
        host.remove_orphan_cni_chains(self.layout)
        host.remove_kube_chains()
        host.remove_log_links(self.layout)
        host.remove_kubelet_leftovers(self.layout)
        host.restore_sysctls(self.layout)
        for state in ("containerd/root", "containerd/state", "kubelet", "cni/ipam", "pod-logs"):
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.layout.root / state)], check=False)

    def leftovers(self) -> list[str]:
        """What of this node is still on the host: empty after ``stop``."""
        found = [f"mount {m}" for m in host.mounts_under(self.layout.root)]
        found += [f"interface {i}" for i in host.interfaces_of(self.layout)]
        found += [f"iptables {r}" for r in host.leftover_rules()]
        found += [f"cgroup {c}" for c in host.kubepods_cgroups()]
        found += [f"shim {p}" for p in host.shims_of(self.layout)]
        found += [f"process {n}" for n in (CONTAINERD, KUBELET, KUBE_PROXY) if self.plane.is_running(n)]
        return found

    # --- tools ----------------------------------------------------------------------------------------------

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.binaries.path("ctr")), f"--address={self.layout.containerd_socket}", "-n", "k8s.io", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def _log_path(self, component: str) -> Path:
        return self.plane.state.path / "logs" / f"{component}.log"


def create_control_plane(directory: Path, node_ip: str) -> ControlPlane:
    """A control plane (no simulated nodes) whose API server pods and kubelets can use; not started."""
    pki = directory / "pki"
    kubelet_client = (pki / "apiserver-kubelet-client.crt", pki / "apiserver-kubelet-client.key")
    plane = ControlPlane.create(directory, apiserver_args=apiserver_args(node_ip, kubelet_client))
    ca = KeyPair(plane.ca_file, plane.ca_file.with_suffix(".key"))
    issue_client(pki, ca, "apiserver-kubelet-client", "kube-apiserver-kubelet-client")
    return plane


def start_cluster_with_real_node(
    directory: Path, binaries: NodeBinaries, images: list[Path], name: str = "real1"
) -> tuple[ControlPlane, RealNode]:
    ip = host.default_node_ip()
    plane = create_control_plane(directory / "cp", ip)
    node = RealNode(plane, binaries, NodeLayout(directory.resolve() / name, name), ip, images)
    try:
        plane.start()
        node.start()
    except BaseException:
        node.stop()
        plane.stop()
        raise
    return plane, node
