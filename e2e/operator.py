"""Run the operator as users run it: its own process, its own ServiceAccount, the ClusterRole from manifests/rbac."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .controlplane import ControlPlane, write_token_kubeconfig
from .controlplane.cluster import free_port

ROOT = Path(__file__).resolve().parents[1]
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


def kubectl(plane: ControlPlane, *args: str, stdin: str | None = None) -> str:
    command = [str(plane.binaries.path("kubectl")), f"--kubeconfig={plane.kubeconfig}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, input=stdin)
    if result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
    return result.stdout


def service_account_token(plane: ControlPlane, namespace: str, name: str, seconds: int = 3600) -> str:
    request = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                          "spec": {"expirationSeconds": seconds}})  # fmt: skip
    out = kubectl(plane, "create", "--raw", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                  "-f", "-", stdin=request)  # fmt: skip
    return str(json.loads(out)["status"]["token"])


@contextmanager
def run_operator(plane: ControlPlane, workdir: Path, *extra_args: str) -> Iterator[RunningOperator]:
    """Install the operator's namespace and RBAC, then run ``falco-operator run`` with the ServiceAccount's token."""
    manifests = ROOT / "manifests"
    kubectl(plane, "apply", "-f", str(manifests / "manager" / "namespace.yaml"), "-f", str(manifests / "rbac"))
    kubeconfig = workdir / "operator.kubeconfig"
    write_token_kubeconfig(
        kubeconfig, plane.server, plane.ca_file, service_account_token(plane, NAMESPACE, SERVICE_ACCOUNT)
    )
    metrics_port, probe_port = free_port(), free_port()
    log_path = workdir / "operator.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "falco_operator", "run", f"--kubeconfig={kubeconfig}",
             f"--metrics-bind-address=127.0.0.1:{metrics_port}", f"--health-probe-bind-address=127.0.0.1:{probe_port}",
             "--leader-elect", f"--leader-election-namespace={NAMESPACE}", *extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
    running = RunningOperator(process, metrics_port, probe_port, log_path)
    try:
        _wait_ready(running)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(operator: RunningOperator, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if operator.process.poll() is not None:
            raise AssertionError(f"the operator exited:\n{operator.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{operator.probe_port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the operator was not ready within {timeout:.0f}s:\n{operator.log_tail()}")
