"""``make demo``: the local control plane, the operator under its own ServiceAccount, and seed example 01.

Everything runs in the background until ``make controlplane-down``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .controlplane import ControlPlane
from .controlplane.__main__ import DEFAULT_DIR, _up
from .controlplane.cluster import free_port
from .operator import ROOT, install_crds, operator_command, operator_env, prepare_operator, wait_ready

SAMPLE = ROOT / "manifests" / "samples" / "01-falco-sample.yaml"


def start_operator(plane: ControlPlane) -> None:
    """The operator under its own ServiceAccount, stopped with the control plane (``make controlplane-down``)."""
    kubeconfig = plane.state.path / "operator.kubeconfig"
    prepare_operator(plane, kubeconfig, token_seconds=24 * 3600)
    probe_port = free_port()
    plane.add_process("falco-operator", operator_command(kubeconfig, free_port(), probe_port, "--log-format=text"),
                      env=operator_env())  # fmt: skip
    log = plane.state.path / "logs" / "falco-operator.log"
    wait_ready(probe_port, lambda: plane.is_running("falco-operator"), lambda: f"see {log}")


def main() -> int:
    directory = Path(os.environ.get("DEMO_DIR", str(DEFAULT_DIR)))
    _up(directory, ("node1", "node2", "node3"))
    plane = ControlPlane.attach(directory)
    install_crds(plane)
    if not plane.is_running("falco-operator"):
        start_operator(plane)
    plane.kubectl("apply", "-n", "default", "-f", str(SAMPLE))
    plane.kubectl("wait", "-n", "default", "falco/falco-sample", "--for=condition=Available", "--timeout=90s")
    print(plane.kubectl("get", "falco,daemonsets,pods", "-n", "default").stdout)
    print(
        "The operator runs as the ServiceAccount falco-operator-system/falco-operator with manifests/rbac.\n"
        f"Its log: {plane.state.path / 'logs' / 'falco-operator.log'}\n"
        f"Try: export KUBECONFIG={plane.kubeconfig}; kubectl get falcosecurity -A\n"
        "Stop everything with: make controlplane-down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
