"""``make demo``: the local control plane, the operator under its own ServiceAccount, and seed example 01.

Everything runs in the background until ``make controlplane-down``.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from pathlib import Path

from .controlplane import ControlPlane, write_token_kubeconfig
from .controlplane.__main__ import DEFAULT_DIR, _up
from .controlplane.cluster import free_port
from .operator import NAMESPACE, ROOT, SERVICE_ACCOUNT, kubectl, service_account_token

SAMPLE = ROOT / "manifests" / "samples" / "01-falco-sample.yaml"


def start_operator(plane: ControlPlane) -> int:
    manifests = ROOT / "manifests"
    kubectl(plane, "apply", "-f", str(manifests / "crd"))
    kubectl(plane, "wait", "--for=condition=Established", "--timeout=60s", "-f", str(manifests / "crd"))
    kubectl(plane, "apply", "-f", str(manifests / "manager" / "namespace.yaml"), "-f", str(manifests / "rbac"))
    kubeconfig = plane.state.path / "operator.kubeconfig"
    token = service_account_token(plane, NAMESPACE, SERVICE_ACCOUNT, seconds=24 * 3600)
    write_token_kubeconfig(kubeconfig, plane.server, plane.ca_file, token)
    probe_port = free_port()
    args = [sys.executable, "-m", "falco_operator", "run", f"--kubeconfig={kubeconfig}",
            f"--metrics-bind-address=127.0.0.1:{free_port()}", f"--health-probe-bind-address=127.0.0.1:{probe_port}",
            "--log-format=text"]  # fmt: skip
    plane.add_process("falco-operator", args, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{probe_port}/readyz", timeout=2):
                return probe_port
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the operator did not become ready; see {plane.state.path / 'logs' / 'falco-operator.log'}")


def main() -> int:
    directory = Path(os.environ.get("DEMO_DIR", str(DEFAULT_DIR)))
    _up(directory, ("node1", "node2", "node3"))
    plane = ControlPlane.attach(directory)
    if not plane.is_running("falco-operator"):
        start_operator(plane)
    kubectl(plane, "apply", "-n", "default", "-f", str(SAMPLE))
    kubectl(plane, "wait", "-n", "default", "falco/falco-sample", "--for=condition=Available", "--timeout=90s")
    print(kubectl(plane, "get", "falco,daemonsets,pods", "-n", "default"))
    print(
        "The operator runs as the ServiceAccount falco-operator-system/falco-operator with manifests/rbac.\n"
        f"Its log: {plane.state.path / 'logs' / 'falco-operator.log'}\n"
        f"Try: export KUBECONFIG={plane.kubeconfig}; kubectl get falcosecurity -A\n"
        "Stop everything with: make controlplane-down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
