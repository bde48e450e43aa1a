"""Run the operator as users run it: its own process, its own ServiceAccount, the ClusterRole from manifests/rbac."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .controlplane import ControlPlane, start_cluster, write_token_kubeconfig
from .controlplane.cluster import free_port
from .controlplane.processes import popen, terminate

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
NAMESPACE = "falco-operator-system"
SERVICE_ACCOUNT = "falco-operator"
USERNAME = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"


@dataclass
class RunningOperator:
    process: subprocess.Popen[bytes]
    metrics_port: int
    probe_port: int
    log_path: Path
    username: str = USERNAME

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log_tail(self, size: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-size:]


@contextmanager
def plane_with_crds(directory: Path, nodes: Sequence[str]) -> Iterator[ControlPlane]:
    """A control plane of its own with these simulated nodes and the project's CRDs, for a test module or a
    benchmark that needs another set of nodes than the session's; stopped afterwards."""
    plane = start_cluster(directory, nodes=tuple(nodes))
    try:
        install_crds(plane)
        yield plane
    finally:
        plane.stop()


def install_crds(plane: ControlPlane) -> Path:
    """Apply the CRDs (and the admission policy that guards ArtifactReports) as users do, with client-side
    ``kubectl apply``, and wait until the CRDs are served."""
    directory = MANIFESTS / "crd"
    plane.kubectl("apply", "-k", str(directory))
    plane.kubectl("apply", "-k", str(MANIFESTS / "policy"))
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "-l",
                  "app.kubernetes.io/part-of=falco-operator")  # fmt: skip
    # Established comes a moment before every API server handler serves the new resources.
    deadline = time.monotonic() + 30
    while (served := plane.kubectl("get", "falcosecurity", "-A", check=False)).returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"CRDs not served: {served.stderr}")
        time.sleep(0.2)
    return directory


def service_account_token(
    plane: ControlPlane, namespace: str, name: str, seconds: int = 3600, *, pod: tuple[str, str] | None = None
) -> str:
    """A token of the ServiceAccount; with ``pod`` (name, uid), bound to that pod as a kubelet's projected token is
    (the API server then names the pod in the token's user info)."""
    spec: dict[str, object] = {"expirationSeconds": seconds}
    if pod:
        spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod[0], "uid": pod[1]}
    request = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
    out = plane.kubectl("create", "--raw", path, "-f", "-", stdin=request).stdout
    return str(json.loads(out)["status"]["token"])


def prepare_operator(plane: ControlPlane, kubeconfig: Path, token_seconds: int = 3600, *, install: bool = True) -> None:
    """Install the operator's namespace and RBAC (unless ``install`` is false: ``install.yaml`` did); write a
    kubeconfig with its ServiceAccount's token."""
    if install:
        plane.kubectl("apply", "-f", str(MANIFESTS / "manager" / "namespace.yaml"))
        plane.kubectl("apply", "-k", str(MANIFESTS / "rbac"))
    token = service_account_token(plane, NAMESPACE, SERVICE_ACCOUNT, token_seconds)
    write_token_kubeconfig(kubeconfig, plane.server, plane.ca_file, token)


def operator_command(
    kubeconfig: Path, metrics_port: int, probe_port: int, *extra_args: str, python: str | None = None
) -> list[str]:
    """``python`` (default: this interpreter) runs the operator: a benchmark passes one with the runtime
    dependencies only, as the image has them (``bench.agent.runtime_python``)."""
    return [python or sys.executable, "-m", "falco_operator", "run", f"--kubeconfig={kubeconfig}",
            f"--metrics-bind-address=127.0.0.1:{metrics_port}", f"--health-probe-bind-address=127.0.0.1:{probe_port}",
            *extra_args]  # fmt: skip


def operator_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def wait_ready(probe_port: int, alive: Callable[[], bool], describe: Callable[[], str], timeout: float = 60) -> None:
    """Poll the operator's ``/readyz`` until it answers 200; fail early if the process is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise AssertionError(f"the operator exited: {describe()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{probe_port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the operator was not ready within {timeout:.0f}s: {describe()}")


@contextmanager
def run_operator(
    plane: ControlPlane, workdir: Path, *extra_args: str, install: bool = True, python: str | None = None
) -> Iterator[RunningOperator]:
    """Run ``falco-operator run`` with the ServiceAccount's token and leader election, for one ``with`` block."""
    workdir.mkdir(parents=True, exist_ok=True)
    kubeconfig = workdir / "operator.kubeconfig"
    prepare_operator(plane, kubeconfig, install=install)
    metrics_port, probe_port = free_port(), free_port()
    log_path = workdir / "operator.log"
    command = operator_command(kubeconfig, metrics_port, probe_port, "--leader-elect",
                               f"--leader-election-namespace={NAMESPACE}", *extra_args, python=python)  # fmt: skip
    with log_path.open("wb") as log:
        process = popen(command, stdout=log, env=operator_env(), cwd=ROOT)
    running = RunningOperator(process, metrics_port, probe_port, log_path)
    try:
        wait_ready(probe_port, lambda: process.poll() is None, lambda: "\n" + running.log_tail())
        yield running
    finally:
        terminate(process, grace=30)
