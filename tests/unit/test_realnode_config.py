"""The real node's configuration: what each component is told, as pure functions of the node's layout."""

from __future__ import annotations

import tomllib
from pathlib import Path

from e2e.realnode.config import (
    NodeLayout,
    apiserver_args,
    cni_config,
    containerd_config,
    kube_proxy_config,
    kubelet_command,
    kubelet_config,
)

LAYOUT = NodeLayout(Path("/state/real1"), "real1")


def test_the_kubelet_authenticates_and_authorizes_every_caller_through_the_api_server() -> None:
    config = kubelet_config(LAYOUT, Path("/pki/ca.crt"))
    assert config["authentication"] == {
        "anonymous": {"enabled": False},
        "webhook": {"enabled": True},
        "x509": {"clientCAFile": "/pki/ca.crt"},
    }
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["readOnlyPort"] == 0
    assert config["containerRuntimeEndpoint"] == "unix:///run/containerd/containerd.sock"
    assert config["podLogsDir"].startswith("/state/real1/")


def test_the_api_server_reaches_kubelets_by_address_with_a_client_certificate() -> None:
    args = apiserver_args("10.1.2.3", (Path("/p/c.crt"), Path("/p/c.key")))
    assert "--advertise-address=10.1.2.3" in args
    assert "--endpoint-reconciler-type=lease" in args
    assert "--kubelet-preferred-address-types=InternalIP,Hostname" in args
    assert {"--kubelet-client-certificate=/p/c.crt", "--kubelet-client-key=/p/c.key"} <= set(args)


def test_containerd_keeps_its_state_under_the_node_and_clamps_oom_scores() -> None:
    config = tomllib.loads(containerd_config(LAYOUT, Path("/bin/runc"), Path("/cni")))
    assert config["root"] == "/state/real1/containerd/root"
    assert config["grpc"]["address"] == "/run/containerd/containerd.sock"
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["containerd"]["runtimes"]["runc"]["options"] == {"BinaryName": "/bin/runc", "SystemdCgroup": False}
    assert runtime["cni"] == {"bin_dirs": ["/cni"], "conf_dir": "/state/real1/cni/net.d"}


def test_the_pod_network_is_named_after_the_node_so_teardown_finds_its_rules() -> None:
    config = cni_config(LAYOUT)
    assert config["name"] == "falco-e2e-real1"
    bridge = config["plugins"][0]
    assert (bridge["bridge"], bridge["ipMasq"]) == ("cni-real1", True)
    assert bridge["ipam"]["dataDir"] == "/state/real1/cni/ipam"
    assert len(NodeLayout(Path("/s"), "a-very-long-node-name").bridge) <= 15


def test_kube_proxy_and_kubelet_name_the_node() -> None:
    proxy = kube_proxy_config(LAYOUT, Path("/k"))
    assert (proxy["mode"], proxy["hostnameOverride"]) == ("iptables", "real1")
    command = kubelet_command(Path("/bin/kubelet"), LAYOUT, Path("/k"), "10.1.2.3")
    assert "--hostname-override=real1" in command
    assert "--node-ip=10.1.2.3" in command


def test_the_bounding_set_is_read_from_the_status_mask() -> None:
    from e2e.realnode.host import bounding_capabilities

    # This project's CI machines: every capability up to 40 but SYS_RESOURCE (24).
    status = "Name:\tx\nCapBnd:\t000001fffeffffff\n"
    assert bounding_capabilities(status) == {"SYS_PTRACE", "SYS_ADMIN", "PERFMON", "BPF"}
    assert bounding_capabilities("CapBnd:\t000001ffffffffff\n") >= {"SYS_RESOURCE", "BPF"}
