"""Run artifact agents as real processes, each with the token of its Falco's ServiceAccount and its own directories.

The operator creates the ServiceAccount, Role and DaemonSet of a Falco; the DaemonSet's pods exist on the simulated
nodes. An ``AgentProcess`` plays the sidecar of one of those pods: the pod's name, UID and node in its
environment, files written under a temporary directory instead of the pod's volumes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kr8s.asyncio

from falco_operator.instance.podtemplate import AGENT_INTERPRETER_ENV

from .controlplane import ControlPlane, write_token_kubeconfig
from .controlplane.cluster import free_port
from .controlplane.processes import popen, terminate
from .kube import call, request
from .operator import ROOT, service_account_token
from .wait import wait_for

Json = dict[str, Any]
FALCO_API = "/apis/instance.falcosecurity.dev/v1alpha1"


@dataclass
class AgentProcess:
    plane: ControlPlane
    workdir: Path
    namespace: str
    falco: str
    pod: str
    pod_uid: str
    node: str
    debounce: float = 0.3
    falco_url: str = ""
    """Falco's web server for the agent to ask what it loaded; empty: do not ask."""
    extra_args: tuple[str, ...] = ()
    python: str = sys.executable
    """The interpreter to run the agent with (a virtualenv with only the runtime dependencies, for benchmarks)."""
    probe_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def rules_dir(self) -> Path:
        return self.workdir / "rules.d"

    @property
    def config_dir(self) -> Path:
        return self.workdir / "config.d"

    @property
    def plugins_dir(self) -> Path:
        return self.workdir / "plugins"

    @property
    def log_path(self) -> Path:
        return self.workdir / "agent.log"

    def log_tail(self, size: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-size:] if self.log_path.exists() else ""

    def start(self) -> None:
        self.workdir = self.workdir.absolute()  # the agent runs in the project's directory, not the caller's
        self.workdir.mkdir(parents=True, exist_ok=True)
        kubeconfig = self.workdir / "agent.kubeconfig"
        bound = (self.pod, self.pod_uid) if self.pod_uid else None
        token = service_account_token(self.plane, self.namespace, self.falco, pod=bound)
        write_token_kubeconfig(kubeconfig, self.plane.server, self.plane.ca_file, token, self.namespace)
        env = dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            POD_NAME=self.pod,
            POD_NAMESPACE=self.namespace,
            POD_UID=self.pod_uid,
            NODE_NAME=self.node,
            FALCO_INSTANCE=self.falco,
            **AGENT_INTERPRETER_ENV,  # the agent's interpreter runs as in the pod
        )
        command = [self.python, "-m", "artifact_agent", f"--kubeconfig={kubeconfig}",
                   f"--rules-dir={self.rules_dir}", f"--config-dir={self.config_dir}",
                   f"--plugins-dir={self.plugins_dir}", f"--probe-address=127.0.0.1:{self.probe_port}",
                   f"--debounce={self.debounce}", f"--falco-url={self.falco_url}", "--log-format=text",
                   "--log-level=debug", *self.extra_args]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = popen(command, stdout=log, env=env, cwd=ROOT)

    def kill(self) -> None:
        """SIGKILL, as a node losing power or an OOM kill would."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process:
            terminate(self.process, grace=20)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.probe_port}{path}", timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError as error:
            return 0, str(error)

    async def wait_ready(self, timeout: float = 60) -> None:
        def alive() -> bool:
            if self.process is None or self.process.poll() is not None:
                raise AssertionError(f"agent {self.pod} exited:\n{self.log_tail()}")
            return True

        async def probe() -> int:
            alive()
            return self.get("/readyz")[0]

        await wait_for(probe, lambda status: status == 200, timeout=timeout, what=f"agent {self.pod} ready")

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the agent's /metrics (0 when absent)."""
        _, text = self.get("/metrics")
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            series, _, number = line.rpartition(" ")
            if series == (f"{name}{{{wanted}}}" if labels else name):
                return float(number)
        return 0.0

    def files(self, directory: Path) -> dict[str, bytes]:
        """The visible files of one of the agent's directories, read as Falco reads them."""
        files: dict[str, bytes] = {}
        if not directory.is_dir():
            return files
        for entry in sorted(directory.iterdir()):
            if entry.name.startswith(".."):
                continue
            try:
                files[entry.name] = entry.read_bytes()
            except FileNotFoundError:
                continue  # a link made for the next generation, dangling until its swap: Falco skips it too
        return files


def rulesfile(name: str, rules: str | None = None, **spec: Any) -> Json:
    if rules is not None:
        spec["inlineRules"] = rules
    return {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile", "metadata": {"name": name},
            "spec": spec}  # fmt: skip


def rule(name: str, condition: str = "evt.num > 0") -> str:
    return (f"- rule: {name}\n  desc: test rule {name}\n  condition: {condition}\n"
            f"  output: {name} fired (proc=%proc.name)\n  priority: NOTICE\n")  # fmt: skip


async def falco_pods(
    api: kr8s.asyncio.Api, namespace: str, name: str, labels: dict[str, str] | None = None, nodes: int = 3
) -> dict[str, Json]:
    """Create a Falco (DaemonSet) and return its pods by node, once the operator created its Role and pods."""
    body = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco",
            "metadata": {"name": name, "labels": labels or {}}, "spec": {}}  # fmt: skip
    await call(api, "POST", f"{FALCO_API}/namespaces/{namespace}/falcos", body=body)
    return await wait_falco_pods(api, namespace, name, nodes)


async def wait_falco_pods(api: kr8s.asyncio.Api, namespace: str, name: str, nodes: int = 3) -> dict[str, Json]:
    """The pods of an existing Falco by node, once the operator created its Role and pods."""
    selector = f"app.kubernetes.io/instance={name}"

    async def pods() -> list[Json]:
        status, listing = await request(api, "GET", f"/api/v1/namespaces/{namespace}/pods",
                                        params={"labelSelector": selector})  # fmt: skip
        return [pod for pod in (listing or {}).get("items", []) if pod["spec"].get("nodeName")] if status == 200 else []

    found = await wait_for(pods, lambda items: len(items) >= nodes, timeout=60, what=f"pods of Falco {name}")
    role = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/{name}"
    await wait_for(lambda: request(api, "GET", role), lambda answer: answer[0] == 200, what=f"Role {name}")
    return {pod["spec"]["nodeName"]: pod for pod in found}
