"""``make e2e``: the scenarios on a kind cluster with the real image and real Falco.

Steps: find a container engine and kind (stop with a clear message when either is missing); create the cluster;
build the image and load it into the nodes; ``kubectl apply -f install.yaml`` (client-side, then server-side over
it); a Falco with a kernel engine (``modern_ebpf``) or, with ``--engine nodriver``, the container plugin; seed
example 05's shell rule; check that Falco loaded that rules file (its sha256 metric) and raised the alert for a
``kubectl exec`` of bash into a test pod; uninstall with ``kubectl delete -f`` and find nothing left; delete the
cluster unless ``--keep``.

The pieces that need no container engine (the kind config, the install rendering, the alert parsing, the metric
parsing) are pure functions, exercised in CI by ``tests/unit/test_kind_e2e.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from artifact_agent.confirmation import parse_rules_hashes

from .falco_alerts import shell_alerts
from .scenarios.install import INSTALL, OPERATOR_NAMESPACE, leftovers, uninstall_command

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "manifests" / "samples"
CLUSTER = "falco-operator-e2e"
DEFAULT_IMAGE = "falco-operator:0.1.0"
NAMESPACE = "falco-e2e"
FALCO = "falco"
RULES_FILE = "50-03-falco-rules-inline.yaml"
# Seed example 06 names container plugin 0.2.4; Falco 0.44.1 (the operator's default) is tested here with the
# container plugin 0.7.1 (../shared/falco), so the kind run pulls that version from the same repository.
CONTAINER_PLUGIN = "ghcr.io/falcosecurity/plugins/plugin/container:0.7.1"
Json = dict[str, Any]


class Missing(Exception):
    """A tool ``make e2e`` needs is not installed: the message says which and what to do."""


def find_tools(environ: dict[str, str] | None = None) -> tuple[str, str]:
    """(container engine, kind): docker or podman, and kind, from PATH (``CONTAINER_ENGINE`` may name one)."""
    env = os.environ if environ is None else environ
    engine = env.get("CONTAINER_ENGINE") or shutil.which("docker") or shutil.which("podman")
    if not engine:
        raise Missing("make e2e needs docker or podman to run kind, and neither is installed")
    kind = env.get("KIND") or shutil.which("kind")
    if not kind:
        raise Missing("make e2e needs kind (https://kind.sigs.k8s.io): `go install sigs.k8s.io/kind@latest`")
    return engine, kind


def kind_config(workers: int = 2) -> Json:
    """One control-plane node and ``workers`` workers; Falco runs on all of them (it tolerates the control plane)."""
    nodes = [{"role": "control-plane"}] + [{"role": "worker"} for _ in range(workers)]
    return {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "name": CLUSTER, "nodes": nodes}


def render_install(text: str, image: str) -> str:
    """``install.yaml`` with the operator's and the agent's image replaced by ``image``."""
    return text.replace(DEFAULT_IMAGE, image)


def falco_manifest(engine: str) -> Json:
    """The Falco under test: a DaemonSet on every node. Seed example 06's container plugin supplies the
    ``container.*`` fields the shell rule uses (Falco 0.41 and later take them from that plugin)."""
    spec: Json = {"engine": {"kind": engine}}
    return {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco",
            "metadata": {"name": FALCO, "namespace": NAMESPACE}, "spec": spec}  # fmt: skip


def seed(name: str) -> Json:
    document: Json = YAML(typ="safe").load((SAMPLES / name).read_text())
    document["metadata"]["namespace"] = NAMESPACE
    return document


def rules_loaded(metrics: str, expected: bytes) -> bool:
    """Whether Falco's metrics list the rules file with the sha256 of ``expected``."""
    return parse_rules_hashes(metrics).get(RULES_FILE) == hashlib.sha256(expected).hexdigest()


def expected_rules(rulesfile: Json) -> bytes:
    """The bytes the agent writes for an inline Rulesfile: the inline text as it is (the local install test
    checks this against what agents really write)."""
    return str(rulesfile["spec"]["ociArtifact"]["inline"]).encode()


def poll(what: str, probe: Callable[[], bool], timeout: float, interval: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


class Kind:
    def __init__(self, engine: str, kind: str, workdir: Path) -> None:
        self.engine, self.kind, self.workdir = engine, kind, workdir
        self.kubeconfig = workdir / "kubeconfig"
        self.env = dict(os.environ, KIND_EXPERIMENTAL_PROVIDER="podman") if "podman" in engine else dict(os.environ)

    def run(self, *command: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        print("+", " ".join(command), flush=True)
        result = subprocess.run(command, capture_output=True, text=True, input=stdin, env=self.env)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", f"--kubeconfig={self.kubeconfig}", *args, stdin=stdin, check=check)

    def create(self) -> None:
        config = self.workdir / "kind.yaml"
        config.write_text(json.dumps(kind_config()))
        self.run(self.kind, "create", "cluster", "--config", str(config), "--kubeconfig", str(self.kubeconfig),
                 "--wait", "120s")  # fmt: skip

    def load_image(self, image: str) -> None:
        self.run(self.engine, "build", "-t", image, "-f", str(ROOT / "Containerfile"), str(ROOT))
        if "podman" in self.engine:
            archive = self.workdir / "image.tar"
            self.run(self.engine, "save", "-o", str(archive), image)
            self.run(self.kind, "load", "image-archive", str(archive), "--name", CLUSTER)
        else:
            self.run(self.kind, "load", "docker-image", image, "--name", CLUSTER)

    def delete(self) -> None:
        self.run(self.kind, "delete", "cluster", "--name", CLUSTER, check=False)

    def falco_pods(self) -> list[str]:
        out = self.kubectl("get", "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={FALCO}", "-o",
                           "jsonpath={.items[*].metadata.name}").stdout  # fmt: skip
        return out.split()

    def falco_metrics(self, pod: str) -> str:
        path = f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}:8765/proxy/metrics"
        return self.kubectl("get", "--raw", path, check=False).stdout


def scenario(cluster: Kind, image: str, engine: str) -> None:
    kubectl = cluster.kubectl
    install_file = cluster.workdir / "install.yaml"
    install_file.write_text(render_install(INSTALL.read_text(), image))
    kubectl("apply", "-f", str(install_file))
    kubectl("apply", "--server-side", "-f", str(install_file))
    kubectl("-n", OPERATOR_NAMESPACE, "rollout", "status", "deployment/falco-operator", "--timeout=180s")

    kubectl("create", "namespace", NAMESPACE)
    rulesfile = seed("05-rulesfile-inline.yaml")
    plugin = seed("06-plugin-container.yaml")
    plugin["spec"]["ociArtifact"]["reference"] = CONTAINER_PLUGIN
    documents = [falco_manifest(engine), rulesfile, plugin]
    kubectl("apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in documents))
    kubectl("-n", NAMESPACE, "wait", f"falco/{FALCO}", "--for=condition=Available", "--timeout=600s")
    kubectl("-n", NAMESPACE, "wait", "rulesfile/falco-rules", "--for=condition=Programmed", "--timeout=180s")

    expected = expected_rules(rulesfile)
    pods = cluster.falco_pods()
    assert pods, "no Falco pods"
    for pod in pods:
        poll(f"Falco in {pod} loaded {RULES_FILE}", partial(_loaded, cluster, pod, expected), timeout=120)

    if engine == "nodriver":
        print("engine nodriver: Falco sees no system calls, so the shell-in-container alert is not checked")
    else:
        shell_in_container_alert(kubectl)

    result = kubectl(*uninstall_command(), check=False)
    assert result.returncode == 0, result.stderr
    poll("nothing of the project left", lambda: leftovers(kubectl, frozenset({FALCO})) == [], timeout=180)


def shell_in_container_alert(kubectl: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """The second seed's case: ``kubectl exec`` of bash into a test pod raises seed example 05's alert."""
    kubectl("-n", NAMESPACE, "run", "shell-target", "--image=docker.io/library/bash:5", "--restart=Never",
            "--command", "--", "sleep", "3600")  # fmt: skip
    kubectl("-n", NAMESPACE, "wait", "pod/shell-target", "--for=condition=Ready", "--timeout=180s")
    kubectl("-n", NAMESPACE, "exec", "shell-target", "--", "bash", "-c", "echo hello from a shell")

    def alerted() -> bool:
        logs = kubectl("-n", NAMESPACE, "logs", "-l", f"app.kubernetes.io/instance={FALCO}", "-c", "falco",
                       "--tail=-1", "--max-log-requests=10", check=False).stdout  # fmt: skip
        return bool(shell_alerts(logs, "shell-target"))

    poll("Falco's alert for the shell in shell-target", alerted, timeout=120)


def _loaded(cluster: Kind, pod: str, expected: bytes) -> bool:
    return rules_loaded(cluster.falco_metrics(pod), expected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--engine", choices=("modern_ebpf", "nodriver"), default="modern_ebpf",
                        help="Falco's engine; nodriver where eBPF is unavailable (no alert check then)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the cluster afterwards")
    args = parser.parse_args(argv)
    try:
        engine, kind = find_tools()
    except Missing as missing:
        print(missing, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="falco-operator-e2e-") as directory:
        cluster = Kind(engine, kind, Path(directory))
        cluster.create()
        try:
            cluster.load_image(args.image)
            scenario(cluster, args.image, args.engine)
            print("make e2e: every scenario passed")
        finally:
            if args.keep:
                kept = Path(tempfile.gettempdir()) / f"{CLUSTER}.kubeconfig"
                shutil.copy(cluster.kubeconfig, kept)
                print(f"kept the cluster {CLUSTER}: export KUBECONFIG={kept}")
            else:
                cluster.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
