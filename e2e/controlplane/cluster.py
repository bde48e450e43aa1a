"""The local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler on loopback.

State (certificates, kubeconfigs, logs, PIDs) lives in one directory, so ``down`` from another process can
stop what ``up`` started.
"""

from __future__ import annotations

import json
import random
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import processes
from .build import Binaries, binaries_dir, ensure_binaries
from .pki import KeyPair, Pki, create_pki

STATE_FILE = "state.json"
SERVICE_CIDR = "10.0.0.0/24"

# Writes only, at Metadata level, so tests and benchmarks can attribute every write to a user.
_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "None"},
    ],
}


# Listening ports come from below the kernel's ephemeral range (32768-60999 by default): a port picked there
# could be taken by any outgoing connection (dozens of agents talking to the API server) before its server binds.
_LISTEN_PORTS = range(20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, outside the ephemeral range, never handed out twice by this process."""
    for _ in range(1000):
        port = random.choice(_LISTEN_PORTS)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port between 20000 and 32000")


def _log(message: str) -> None:
    print(f"[controlplane] {message}", file=sys.stderr, flush=True)


@dataclass
class State:
    directory: str
    apiserver_port: int
    etcd_port: int
    etcd_peer_port: int
    pids: dict[str, int] = field(default_factory=dict)
    executables: dict[str, str] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.directory)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.path / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.path / "logs" / "audit.log"

    def save(self) -> None:
        (self.path / STATE_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> State:
        return cls(**json.loads((directory / STATE_FILE).read_text()))


def write_kubeconfig(path: Path, server: str, ca: Path, client: KeyPair, user: str = "admin") -> None:
    """Write a kubeconfig (JSON is valid YAML) that authenticates with a client certificate."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(client.cert), "client-key": str(client.key)}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


def kubeconfig_tls(path: Path) -> tuple[str, ssl.SSLContext]:
    """Server URL and a TLS context with the client certificate, from a kubeconfig written by ``write_kubeconfig``."""
    config = json.loads(path.read_text())
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    context = ssl.create_default_context(cafile=cluster["certificate-authority"])
    context.load_cert_chain(user["client-certificate"], user["client-key"])
    return str(cluster["server"]), context


def write_token_kubeconfig(path: Path, server: str, ca: Path, token: str, namespace: str = "default") -> None:
    """Write a kubeconfig that authenticates with a bearer token (a ServiceAccount's, for RBAC tests)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "token", "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "token", "namespace": namespace}}],
        "current-context": "local",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


class ControlPlane:
    """A running (or stopped) local control plane rooted at one state directory."""

    def __init__(self, state: State, binaries: Binaries, *, attached: bool) -> None:
        self.state = state
        self.binaries = binaries
        self.attached = attached

    @property
    def kubeconfig(self) -> Path:
        return self.state.kubeconfig

    @property
    def server(self) -> str:
        return self.state.server

    @property
    def ca_file(self) -> Path:
        return self.state.path / "pki" / "ca.crt"

    @classmethod
    def create(cls, directory: Path, *, attached: bool = True, apiserver_args: tuple[str, ...] = ()) -> ControlPlane:
        """Prepare certificates, kubeconfigs and commands in ``directory``; nothing runs yet."""
        binaries = ensure_binaries()
        directory.mkdir(parents=True, exist_ok=True)
        state = State(
            directory=str(directory.resolve()),
            apiserver_port=free_port(),
            etcd_port=free_port(),
            etcd_peer_port=free_port(),
        )
        pki = create_pki(state.path / "pki")
        write_kubeconfig(state.kubeconfig, state.server, pki.ca.cert, pki.admin)
        write_kubeconfig(
            state.path / "controller-manager.kubeconfig", state.server, pki.ca.cert, pki.controller_manager
        )
        write_kubeconfig(state.path / "scheduler.kubeconfig", state.server, pki.ca.cert, pki.scheduler)
        (state.path / "audit-policy.json").write_text(json.dumps(_AUDIT_POLICY))
        state.commands = _commands(state, binaries, pki, apiserver_args)
        state.executables = {name: Path(args[0]).name for name, args in state.commands.items()}
        state.save()
        return cls(state, binaries, attached=attached)

    @classmethod
    def attach(cls, directory: Path) -> ControlPlane:
        """Reconnect to a control plane that another process started in ``directory``."""
        return cls(State.load(directory), Binaries(binaries_dir()), attached=False)

    def start(self, *, timeout: float = 120.0) -> None:
        started = time.monotonic()
        for name in ("etcd", "kube-apiserver"):
            self.start_component(name)
        self.wait_ready(timeout=timeout)
        for name in ("kube-controller-manager", "kube-scheduler"):
            self.start_component(name)
        _log(f"control plane ready at {self.server} in {time.monotonic() - started:.1f}s")

    def start_component(self, name: str) -> None:
        args = self.state.commands[name]
        self.state.pids[name] = processes.spawn(args, self.state.path / "logs" / f"{name}.log", attached=self.attached)
        self.state.save()

    def add_process(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        """Run an extra process (the node simulator, an operator) with the control plane's lifecycle."""
        self.state.commands[name] = args
        self.state.executables[name] = Path(args[0]).name
        self.state.pids[name] = processes.spawn(
            args, self.state.path / "logs" / f"{name}.log", attached=self.attached, env=env
        )
        self.state.save()

    def stop_component(self, name: str, *, crash: bool = False) -> None:
        pid = self.state.pids.pop(name, None)
        if pid is not None:
            if crash:
                processes.kill(pid)
            else:
                processes.stop(pid, self.state.executables.get(name))
        self.state.save()

    def is_running(self, name: str) -> bool:
        pid = self.state.pids.get(name)
        return pid is not None and processes.is_alive(pid, self.state.executables.get(name))

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the control plane's own kubectl with the admin kubeconfig; fails loudly unless ``check`` is off."""
        command = [str(self.binaries.path("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, input=stdin)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def stop(self) -> None:
        for name in reversed(list(self.state.pids)):
            self.stop_component(name)

    def wait_ready(self, *, timeout: float = 120.0) -> None:
        """Poll ``/readyz`` until it answers ok; on time-out, say what it last answered."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if "kube-apiserver" in self.state.pids and not self.is_running("kube-apiserver"):
                raise RuntimeError(f"kube-apiserver exited; see {self.state.path / 'logs' / 'kube-apiserver.log'}")
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=context, timeout=5) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                last = f"HTTP {error.code}: {error.read()[-500:].decode(errors='replace')}"
            except (OSError, urllib.error.URLError) as error:
                last = str(error)
            time.sleep(0.2)
        raise TimeoutError(f"kube-apiserver not ready within {timeout:.0f}s; last answer: {last}")


def _commands(state: State, binaries: Binaries, pki: Pki, apiserver_args: tuple[str, ...]) -> dict[str, list[str]]:
    directory = state.path
    etcd_url = f"http://127.0.0.1:{state.etcd_port}"
    peer_url = f"http://127.0.0.1:{state.etcd_peer_port}"
    apiserver = [
        str(binaries.path("kube-apiserver")),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={state.apiserver_port}",
        f"--cert-dir={directory / 'apiserver-certs'}",
        f"--tls-cert-file={pki.apiserver.cert}",
        f"--tls-private-key-file={pki.apiserver.key}",
        f"--client-ca-file={pki.ca.cert}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        f"--audit-policy-file={directory / 'audit-policy.json'}",
        f"--audit-log-path={state.audit_log}",
        "--audit-log-format=json",
        "--audit-log-mode=blocking",
    ]
    apiserver += apiserver_args
    return {
        "etcd": [
            str(binaries.path("etcd")),
            "--name=default",
            f"--data-dir={directory / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
        "kube-apiserver": apiserver,
        "kube-controller-manager": [
            str(binaries.path("kube-controller-manager")),
            f"--kubeconfig={directory / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={directory / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={directory / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca.cert}",
            "--controllers=*",
        ],
        "kube-scheduler": [
            str(binaries.path("kube-scheduler")),
            f"--kubeconfig={directory / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={directory / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={directory / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
        ],
    }
