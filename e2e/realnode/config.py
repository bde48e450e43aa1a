"""The real node's configuration files and command lines, as pure functions of its paths and identity.

Every choice that differs from a component's default is here with its reason; ``node.py`` only writes these
files and starts the processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

Json = dict[str, Any]

POD_SUBNET = "10.244.0.0/24"
# The pause image the sandbox uses: built locally, pinned in containerd so it is never pulled.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"
KUBELET_PORT = 10250


@dataclass(frozen=True)
class NodeLayout:
    """Where one node keeps its state: everything under ``root`` except what the components hard-code."""

    root: Path
    name: str
    containerd_socket: Path = Path("/run/containerd/containerd.sock")
    """Where every kubelet node has it: Falco's container plugin finds it there through the pod's host mounts."""

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "conf" / "kubelet.json"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "conf" / "kube-proxy.json"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def sysctl_backup(self) -> Path:
        return self.root / "sysctl.orig"

    @property
    def cni_network(self) -> str:
        """The CNI network name; the bridge plugin tags its iptables rules with it, so teardown can find them."""
        return f"falco-e2e-{self.name}"

    @property
    def bridge(self) -> str:
        return f"cni-{self.name}"[:15]  # an interface name holds at most 15 characters


def containerd_config(layout: NodeLayout, runc: Path, cni_bin_dir: Path) -> str:
    """containerd 2.x configuration (version 3), everything under the node's root."""
    root = layout.root / "containerd"
    return f"""version = 3
root = "{root / "root"}"
state = "{root / "state"}"
[grpc]
  address = "{layout.containerd_socket}"
[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"
[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  disable_apparmor = true
  # Root may lack CAP_SYS_RESOURCE (these VMs do): then nobody can lower oom_score_adj below its current value
  # and runc fails on the sandbox's -998. This clamps pods' values to containerd's own and above.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{cni_bin_dir}"]
    conf_dir = "{layout.cni_conf_dir}"
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def cni_config(layout: NodeLayout) -> Json:
    """A bridge network with masquerading and port maps; containerd adds the loopback itself."""
    ipam = {
        "type": "host-local",
        "ranges": [[{"subnet": POD_SUBNET}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": str(layout.root / "cni" / "ipam"),
    }
    bridge = {"type": "bridge", "bridge": layout.bridge, "isGateway": True, "ipMasq": True, "hairpinMode": True}
    return {
        "cniVersion": "1.0.0",
        "name": layout.cni_network,
        "plugins": [{**bridge, "ipam": ipam}, {"type": "portmap", "capabilities": {"portMappings": True}}],
    }


def kubelet_config(layout: NodeLayout, client_ca: Path) -> Json:
    """The kubelet authenticates its callers by client certificate (the API server's) or token, and asks the API
    server whether each may do what it asks (webhook authorization): no anonymous access."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,  # these machines run cgroup v1
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "imageServiceEndpoint": f"unix://{layout.containerd_socket}",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "readOnlyPort": 0,
        "port": KUBELET_PORT,
        "healthzPort": 10248,
        "healthzBindAddress": "127.0.0.1",
        "address": "0.0.0.0",
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        "serializeImagePulls": False,
        # A small test disk must neither evict pods nor collect images that cannot be pulled back.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 99,
        "imageGCLowThresholdPercent": 98,
        "volumePluginDir": str(layout.kubelet_root / "volume-plugins"),
        "maxPods": 30,
        "podLogsDir": str(layout.pod_logs),
    }


def kube_proxy_config(layout: NodeLayout, kubeconfig: Path) -> Json:
    """iptables mode, so pods reach the API server through the ``kubernetes`` Service as on any cluster."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": layout.name,
        "clusterCIDR": POD_SUBNET,
        "bindAddress": "0.0.0.0",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "iptables": {"localhostNodePorts": False},
        # Zeros leave the host's conntrack sysctls as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


def kubelet_command(kubelet: Path, layout: NodeLayout, kubeconfig: Path, node_ip: str) -> list[str]:
    return [
        str(kubelet),
        f"--config={layout.kubelet_config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={layout.kubelet_root}",
        f"--cert-dir={layout.kubelet_root / 'pki'}",
        f"--hostname-override={layout.name}",
        f"--node-ip={node_ip}",
        "--v=2",
    ]


def apiserver_args(node_ip: str, kubelet_client: tuple[Path, Path]) -> tuple[str, ...]:
    """What the harness's API server needs beside its own flags (the last occurrence of a flag wins):

    - reachable from pods, and the ``kubernetes`` Service given an endpoint they can use (the harness binds
      loopback and runs no endpoint reconciler);
    - kubelets reached by their InternalIP (the node name does not resolve on the host) with a client
      certificate, which the kubelet authenticates and authorizes through the API server.
    """
    certificate, key = kubelet_client
    return (
        "--bind-address=0.0.0.0",
        f"--advertise-address={node_ip}",
        "--endpoint-reconciler-type=lease",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--kubelet-client-certificate={certificate}",
        f"--kubelet-client-key={key}",
    )
