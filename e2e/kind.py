"""``make e2e``: the real-pod scenarios (``tests/e2e``) on a kind cluster with the product image and real Falco.

It finds a container engine and kind (and stops with a clear message when either is missing), then runs
``pytest tests/e2e --cluster=kind``: the session creates the cluster, builds the image and loads it into the
nodes, and ``KindPodCluster`` gives the scenarios what is kind's own (pod ports through the API server's proxy,
``crictl`` and ``systemctl`` in the node containers, a registry on kind's network). ``make e2e-local`` runs the
same scenarios on a real kubelet node of the local control plane (``e2e/realnode``).

The pieces that need no container engine (the kind config, the install rendering, the alert parsing, the metric
parsing) are pure functions, exercised in CI by ``tests/unit/test_kind_e2e.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .registry import Registry, start_registry
from .scenarios.install import INSTALL
from .scenarios.realpods import PodRegistry

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = "falco-operator-e2e"
DEFAULT_IMAGE = "falco-operator:0.1.0"
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


class KindPodCluster:
    """A kind cluster as the ``PodCluster`` of the real-pod scenarios (``tests/e2e``)."""

    modern_ebpf: str | None = None  # kind nodes share the host's kernel, which users' machines give BTF

    def __init__(self, kind: Kind, image: str) -> None:
        self.cluster, self.image = kind, image
        self.nodes = tuple(kind.kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").stdout.split())
        self._registry: Registry | None = None

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, stdin=stdin, check=check)

    def kubectl_argv(self) -> list[str]:
        return ["kubectl", f"--kubeconfig={self.cluster.kubeconfig}"]

    def install_text(self) -> str:
        return render_install(INSTALL.read_text(), self.image)

    def pod_get(self, namespace: str, pod: str, port: int, path: str) -> str:
        """Through the API server's pod proxy: the test machine does not route kind's pod network."""
        return self.kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}").stdout

    def kill_container(self, namespace: str, pod: str, container: str) -> None:
        status = json.loads(self.kubectl("get", "pod", "-n", namespace, pod, "-o", "json").stdout)
        node = status["spec"]["nodeName"]
        entries = status["status"].get("initContainerStatuses", []) + status["status"].get("containerStatuses", [])
        (container_id,) = [e["containerID"].split("://", 1)[1] for e in entries if e["name"] == container]
        script = f"kill -9 $(crictl inspect --output go-template --template '{{{{.info.pid}}}}' {container_id})"
        self.cluster.run(self.cluster.engine, "exec", node, "sh", "-c", script)

    def restart_runtime(self) -> None:
        for node in self.nodes:
            self.cluster.run(self.cluster.engine, "exec", node, "systemctl", "restart", "containerd", "kubelet")

    def registry(self) -> PodRegistry:
        """A registry on the host's address on kind's network, where the nodes (and their pods) reach it."""
        if self._registry is None:
            template = "{{(index .IPAM.Config 0).Gateway}}"
            gateway = self.cluster.run(self.cluster.engine, "network", "inspect", "kind", "-f", template).stdout
            workdir = self.cluster.workdir / "registry"
            self._registry = start_registry(workdir, tls=False, auth=False, address=gateway.strip())
        return PodRegistry(self._registry.host, self._registry)

    def close(self) -> None:
        if self._registry is not None:
            self._registry.stop()


@contextlib.contextmanager
def kind_pod_cluster(image: str, *, keep: bool = False) -> Iterator[KindPodCluster]:
    """A fresh kind cluster with ``image`` built and loaded; deleted afterwards unless ``keep``."""
    engine, kind = find_tools()
    with tempfile.TemporaryDirectory(prefix="falco-operator-e2e-") as directory:
        cluster = Kind(engine, kind, Path(directory))
        cluster.create()
        pods = None
        try:
            cluster.load_image(image)
            pods = KindPodCluster(cluster, image)
            yield pods
        finally:
            if pods is not None:
                pods.close()
            if keep:
                kept = Path(tempfile.gettempdir()) / f"{CLUSTER}.kubeconfig"
                shutil.copy(cluster.kubeconfig, kept)
                print(f"kept the cluster {CLUSTER}: export KUBECONFIG={kept}")
            else:
                cluster.delete()


def main(argv: list[str] | None = None) -> int:
    """Check the tools, then run the real-pod scenarios (``tests/e2e``) on a kind cluster."""
    parser = argparse.ArgumentParser(prog="make e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--keep", action="store_true", help="keep the cluster afterwards")
    args = parser.parse_args(argv)
    try:
        find_tools()
    except Missing as missing:
        print(missing, file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "e2e"), "--cluster=kind", f"--image={args.image}"]
    return subprocess.call(command + (["--keep"] if args.keep else []), cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
