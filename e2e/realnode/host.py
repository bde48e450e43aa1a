"""What a real node changes on the host besides its own directory, and how each change is undone.

Every function here is idempotent and safe to call when nothing is there, so the same cleanup runs after a
clean stop and before a start that follows a killed run. Assumes no other Kubernetes node on this host writes
``KUBE-*`` iptables rules or ``kubepods`` cgroups (a test machine).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

from .config import NodeLayout

SYSCTLS = ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables")
CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/run/netns")


def run(*command: str, check: bool = False, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    if not quiet and result.stdout:
        print(result.stdout, end="")
    return result


def default_node_ip() -> str:
    """The first IPv4 address of the default route's interface: pods and the kubelet reach the API server there."""
    route = run("ip", "-4", "-o", "route", "show", "default", check=True).stdout.split()
    device = route[route.index("dev") + 1]
    for line in run("ip", "-4", "-o", "addr", "show", "dev", device, check=True).stdout.splitlines():
        words = line.split()
        return words[words.index("inet") + 1].split("/")[0]
    raise RuntimeError(f"no IPv4 address on {device}")


# --- sysctls -------------------------------------------------------------------------------------------------


def enable_pod_routing(layout: NodeLayout) -> None:
    """Forwarding for pods, and bridged traffic through iptables (kube-proxy's DNAT for pod → ClusterIP). The
    old values are kept once, so a restart after a crash still restores the host's own."""
    if not Path("/proc/sys/net/bridge").exists():
        run("modprobe", "br_netfilter", check=True)
    if not layout.sysctl_backup.exists():
        layout.sysctl_backup.parent.mkdir(parents=True, exist_ok=True)
        values = [run("sysctl", "-n", name, check=True).stdout.strip() for name in SYSCTLS]
        layout.sysctl_backup.write_text("\n".join(f"{n}={v}" for n, v in zip(SYSCTLS, values, strict=True)) + "\n")
    run("sysctl", "-qw", *(f"{name}=1" for name in SYSCTLS), check=True)


def restore_sysctls(layout: NodeLayout) -> None:
    if layout.sysctl_backup.exists():
        run("sysctl", "-qw", *layout.sysctl_backup.read_text().split(), check=True)
        layout.sysctl_backup.unlink()


# --- processes and cgroups -----------------------------------------------------------------------------------


def kubepods_cgroups() -> list[Path]:
    """Every ``kubepods`` cgroup directory of every hierarchy, deepest first."""
    found: list[Path] = []
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else ():
        top = hierarchy / "kubepods"
        if top.is_dir():
            found += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(found, key=lambda path: len(path.parts), reverse=True)


def processes_in(cgroups: list[Path]) -> set[int]:
    pids: set[int] = set()
    for cgroup in cgroups:
        try:
            pids |= {int(line) for line in (cgroup / "cgroup.procs").read_text().split()}
        except OSError:
            continue
    return pids


def shims_of(layout: NodeLayout) -> set[int]:
    """containerd's shims for this node: they outlive containerd by design and name its socket."""
    marker = f"-address {layout.containerd_socket}".encode()
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"containerd-shim" in command and marker in command:
            found.add(int(entry.name))
    return found


def kill_all(pids: set[int], *, deadline: float = 10.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    end = time.monotonic() + deadline
    while time.monotonic() < end and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.05)


def remove_kubepods_cgroups() -> None:
    """Kill whatever still runs in a pod cgroup, then remove the (empty) tree; ``rmdir`` removes nothing in use."""
    cgroups = kubepods_cgroups()
    kill_all(processes_in(cgroups))
    for cgroup in kubepods_cgroups():
        try:
            cgroup.rmdir()
        except OSError:
            continue


# --- mounts and network --------------------------------------------------------------------------------------


def mounts_under(root: Path) -> list[str]:
    prefix = f"{root}/"
    targets = run("findmnt", "-rn", "-o", "TARGET").stdout.splitlines()
    return sorted((t for t in targets if t.startswith(prefix) or t == str(root)), key=len, reverse=True)


def unmount_under(root: Path) -> None:
    for target in mounts_under(root):
        if run("umount", target).returncode != 0:
            run("umount", "-l", target)


def remove_pod_network_namespaces() -> None:
    """The network namespaces containerd bound for pod sandboxes (``cni-…``); gone pods leave them behind when
    the kubelet could not tear the sandbox down."""
    if not NETNS_DIR.is_dir():
        return
    for namespace in NETNS_DIR.glob("cni-*"):
        run("umount", str(namespace))
        namespace.unlink(missing_ok=True)


def remove_bridge(layout: NodeLayout) -> None:
    for line in run("ip", "-o", "link", "show", "master", layout.bridge).stdout.splitlines():
        interface = line.split(":")[1].strip().split("@")[0]
        run("ip", "link", "del", interface)
    run("ip", "link", "del", layout.bridge)


def interfaces_of(layout: NodeLayout) -> list[str]:
    """The bridge and its veths, if any are left."""
    names = [line.split(":")[1].strip().split("@")[0] for line in run("ip", "-o", "link").stdout.splitlines()]
    attached = run("ip", "-o", "link", "show", "master", layout.bridge).stdout.splitlines()
    return [name for name in names if name == layout.bridge] + [line.split(":")[1].strip() for line in attached]


# --- capabilities --------------------------------------------------------------------------------------------------

# Linux capability numbers (linux/capability.h) of the names the scenarios ask a runtime for.
CAPABILITY_NUMBERS = {"SYS_PTRACE": 19, "SYS_ADMIN": 21, "SYS_RESOURCE": 24, "PERFMON": 38, "BPF": 39}


def bounding_capabilities(status: str | None = None) -> frozenset[str]:
    """The capabilities (of ``CAPABILITY_NUMBERS``) in this process's bounding set: all a container runtime started
    from here can grant. Some sandboxes withhold a few (this project's CI machines lack SYS_RESOURCE)."""
    text = status if status is not None else Path("/proc/self/status").read_text()
    line = next(line for line in text.splitlines() if line.startswith("CapBnd:"))
    mask = int(line.split()[1], 16)
    return frozenset(name for name, number in CAPABILITY_NUMBERS.items() if mask >> number & 1)


# --- iptables --------------------------------------------------------------------------------------------------


def _rules(tool: str, table: str) -> list[str]:
    return run(f"{tool}-save", "-t", table).stdout.splitlines()


def remove_cni_masquerade(layout: NodeLayout) -> None:
    """The bridge plugin's masquerade chains: only those whose POSTROUTING rule names this node's network."""
    marker = f'name: \\"{layout.cni_network}\\"'
    for rule in _rules("iptables", "nat"):
        if rule.startswith("-A POSTROUTING ") and marker in rule and "-j CNI-" in rule:
            chain = rule.split("-j ", 1)[1].split()[0]
            run("iptables", "-t", "nat", *_delete_args(rule))
            run("iptables", "-t", "nat", "-F", chain)
            run("iptables", "-t", "nat", "-X", chain)


def remove_orphan_cni_chains(layout: NodeLayout) -> None:
    """The bridge plugin's masquerade chains that no rule jumps to and that hold nothing but rules of this node's
    network (or nothing): what a teardown the plugin did not finish leaves (its POSTROUTING jump is gone, its chain
    stays), and nothing can use them. A chain of another network is never touched."""
    marker = f'name: \\"{layout.cni_network}\\"'
    rules = _rules("iptables", "nat")
    declared = [line[1:].split()[0] for line in rules if line.startswith(":CNI-")]
    for chain in declared:
        jump = re.compile(rf"-j {re.escape(chain)}(\s|$)")
        own = [line for line in rules if line.startswith(f"-A {chain} ")]
        jumped_to = any(jump.search(line) for line in rules if line.startswith("-A ") and line not in own)
        if not jumped_to and all(marker in line for line in own):
            run("iptables", "-t", "nat", "-F", chain)
            run("iptables", "-t", "nat", "-X", chain)


def remove_kube_chains() -> None:
    """The kubelet's and kube-proxy's ``KUBE-*`` jumps and chains, in every table, IPv4 and IPv6."""
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            for rule in _rules(tool, table):
                if rule.startswith("-A ") and " -j KUBE-" in rule and rule.split()[1] in _BUILTIN_CHAINS:
                    run(tool, "-t", table, *_delete_args(rule))
            chains = [line[1:].split()[0] for line in _rules(tool, table) if line.startswith(":KUBE-")]
            for chain in chains:
                run(tool, "-t", table, "-F", chain)
            for chain in chains:
                run(tool, "-t", table, "-X", chain)


_BUILTIN_CHAINS = frozenset({"INPUT", "OUTPUT", "PREROUTING", "POSTROUTING", "FORWARD"})


def _delete_args(rule: str) -> list[str]:
    """``-A CHAIN …`` of iptables-save as the arguments that delete that rule (quotes as the shell reads them)."""
    return ["-D", *shlex.split(rule)[1:]]


def leftover_rules() -> list[str]:
    return [
        line
        for tool in ("iptables", "ip6tables")
        for line in run(f"{tool}-save").stdout.splitlines()
        if "KUBE-" in line or "CNI-" in line
    ]


# --- files at hard-coded places ----------------------------------------------------------------------------------


def remove_log_links(layout: NodeLayout) -> None:
    """The kubelet links every container's log from ``/var/log/containers``, whatever ``podLogsDir`` says."""
    links = Path("/var/log/containers")
    if not links.is_dir():
        return
    for link in links.iterdir():
        if link.is_symlink() and (str(os.readlink(link)).startswith(f"{layout.root}/") or not link.exists()):
            link.unlink(missing_ok=True)


def remove_kubelet_leftovers(layout: NodeLayout) -> None:
    """The device-plugin socket and libcni's cache of this node's network, which the kubelet and CNI keep at
    fixed paths."""
    for result in Path("/var/lib/cni/results").glob(f"{layout.cni_network}-*"):
        result.unlink(missing_ok=True)
    socket = Path("/var/lib/kubelet/device-plugins/kubelet.sock")
    socket.unlink(missing_ok=True)
    for directory in ("/var/lib/kubelet/device-plugins", "/var/lib/kubelet", "/var/lib/cni/results", "/var/lib/cni"):
        try:
            Path(directory).rmdir()
        except OSError:
            continue
