"""The product in real pods: what the scenarios of ``tests/e2e`` need from a cluster whose kubelets run them.

One set of scenarios runs on two kinds of cluster: kind on users' machines (``make e2e``) and the local control
plane with a real kubelet node on this machine (``make e2e-local``). A ``PodCluster`` gives them what differs:
how to reach a pod's port, how to kill a container or restart a node's runtime, where a registry is that pods
can reach. Everything else is ``kubectl``, as users run it, and these helpers that read what it returns.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from artifact_agent.confirmation import parse_rules_hashes

from .install import Kubectl

Json = dict[str, Any]
NAMESPACE = "falco-e2e"
AGENT = "artifact-operator"
FALCO = "falco"
RELOAD_METRIC = "falcosecurity_falco_reload_timestamp_nanoseconds"


@dataclass(frozen=True)
class PodRegistry:
    """A plain-HTTP registry that pods reach at ``host`` (``address:port``), and the harness pushes to."""

    host: str
    push: Any  # e2e.registry.Registry: the harness's client of the same registry


class PodCluster(Protocol):
    @property
    def nodes(self) -> tuple[str, ...]:
        """The nodes pods run on."""

    @property
    def modern_ebpf(self) -> str | None:
        """None when Falco can watch system calls with ``engine.kind: modern_ebpf`` here, else why not."""

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the cluster."""

    def kubectl_argv(self) -> list[str]:
        """The command line of ``kubectl`` for this cluster (to run it with an editor, as ``kubectl edit``)."""

    def install_text(self) -> str:
        """``manifests/dist/install.yaml`` with the image this cluster holds."""

    def pod_get(self, namespace: str, pod: str, port: int, path: str) -> str:
        """An HTTP GET of a pod's port, the way this cluster lets the test machine reach it."""

    def kill_container(self, namespace: str, pod: str, container: str) -> None:
        """Kill one container's processes (SIGKILL), as an OOM kill or a crash does."""

    def restart_runtime(self) -> None:
        """Restart the container runtime and the kubelet of every node."""

    def registry(self) -> PodRegistry:
        """A registry the pods can pull from (started on first use)."""


def poll(what: str, probe: Callable[[], bool], timeout: float, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


def get_json(kubectl: Kubectl, *args: str) -> Json:
    result: Json = json.loads(kubectl("get", *args, "-o", "json").stdout)
    return result


def apply(kubectl: Kubectl, *documents: Json) -> None:
    kubectl("apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in documents))


def condition(obj: Json, kind: str) -> Json:
    for entry in (obj.get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return dict(entry)
    return {}


def falco_pods(kubectl: Kubectl, falco: str, namespace: str = NAMESPACE) -> list[Json]:
    listing = get_json(kubectl, "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={falco}")
    return [p for p in listing["items"] if not (p["metadata"].get("deletionTimestamp"))]


def container_status(pod: Json, name: str) -> Json:
    status = pod.get("status") or {}
    for entry in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if entry.get("name") == name:
            return dict(entry)
    return {}


def pod_ready(pod: Json) -> bool:
    return condition(pod, "Ready").get("status") == "True"


def restarts(pod: Json, container: str) -> int:
    return int(container_status(pod, container).get("restartCount") or 0)


def started_at(pod: Json, container: str) -> str:
    state = container_status(pod, container).get("state") or {}
    return str((state.get("running") or {}).get("startedAt") or "")


def rules_hashes(metrics: str) -> dict[str, str]:
    """``file_name`` → sha256 from Falco's ``falcosecurity_falco_sha256_rules_files_info`` series."""
    return parse_rules_hashes(metrics)


def expected_rules(rulesfile: Json) -> bytes:
    """The bytes an agent writes for an inline Rulesfile: the inline text as it is."""
    return str(rulesfile["spec"]["ociArtifact"]["inline"]).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_available(kubectl: Kubectl, falco: str, namespace: str, timeout: int = 110) -> None:
    """Wait for the Falco's Available condition; if it does not come, fail with what its pods say (their status and
    the falco container's last log), not with a bare timeout."""
    result = kubectl("-n", namespace, "wait", f"falco/{falco}", "--for=condition=Available", f"--timeout={timeout}s",
                     check=False)  # fmt: skip
    if result.returncode == 0:
        return
    story = [result.stderr.strip()]
    for pod in falco_pods(kubectl, falco, namespace):
        name = pod["metadata"]["name"]
        statuses = (pod["status"].get("initContainerStatuses") or []) + (pod["status"].get("containerStatuses") or [])
        fields = ("name", "ready", "restartCount", "state", "lastState")
        story.append(f"pod {name}: " + json.dumps([{k: status.get(k) for k in fields} for status in statuses]))
        for previous in (False, True):
            text = logs(kubectl, namespace, name, "falco", previous=previous)
            story.append(f"falco log ({'previous' if previous else 'current'}):\n" + text[-3000:])
    raise AssertionError(f"Falco {namespace}/{falco} is not Available after {timeout}s:\n" + "\n".join(story))


def logs(kubectl: Kubectl, namespace: str, pod: str, container: str, *, previous: bool = False) -> str:
    args = ["logs", "-n", namespace, pod, "-c", container, "--tail=-1"] + (["--previous"] if previous else [])
    return kubectl(*args, check=False).stdout


def reload_timestamp(metrics: str) -> str | None:
    """When Falco last (re)started its engine, from its own metric: a hot reload moves it (the log line Falco
    writes for a reload goes through a buffered stdout and may show up late)."""
    for line in metrics.splitlines():
        if line.startswith(RELOAD_METRIC):
            return line.rsplit(" ", 1)[-1]
    return None


def exec_in(kubectl: Kubectl, namespace: str, pod: str, container: str, *command: str) -> str:
    return kubectl("exec", "-n", namespace, pod, "-c", container, "--", *command).stdout


def file_bytes(kubectl: Kubectl, namespace: str, pod: str, container: str, path: str) -> bytes:
    """A file in a running container, read through ``kubectl exec`` as base64 (text mode would re-encode)."""
    return base64.b64decode(exec_in(kubectl, namespace, pod, container, "base64", "-w0", path))
