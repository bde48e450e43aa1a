"""``make demo``: the whole product on the local control plane, with real Falco, from a fresh clone.

Three simulated nodes; the operator under its installed ServiceAccount; on every node what a kubelet would run for
the Falco pod — the artifact agent as a process with the pod's token and real Falco (``nodriver``) reading the
agent's directories; a loopback OCI registry holding the artifacts seed examples 04 and 06 name. The seed examples
are applied one by one, each checked against what it must do (``manifests/samples/README.md``), then a summary is
printed and the demo stays up, printing every file that reaches a node, until Ctrl-C (or ``make
controlplane-down``). With ``--once`` (``make demo ONCE=1``, for CI) it edits seed 05's Rulesfile instead, checks
that the live view shows the edit loaded by Falco on every node, and stops: exit 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx
import kr8s.asyncio
from anyio.abc import TaskStatus
from ruamel.yaml import YAML

from falco_operator.artifacts.oci import machine_architecture

from .agent import AgentProcess, wait_falco_pods
from .controlplane import ControlPlane, start_cluster
from .controlplane.__main__ import DEFAULT_DIR
from .controlplane.cluster import STATE_FILE, free_port
from .controlplane.processes import popen, terminate
from .falco import RunningFalco, find_falco, run_falco
from .kube import request
from .oci_artifacts import push_plugin, push_rules
from .operator import ROOT, operator_command, operator_env, prepare_operator, wait_ready
from .registry import Registry, start_registry
from .scenarios.install import install
from .wait import WaitTimeout, wait_for

SAMPLES = ROOT / "manifests" / "samples"
NODES = ("node1", "node2", "node3")
NAMESPACE = "default"
FALCO = "falco-sample"
ARTIFACT_API = "/apis/artifact.falcosecurity.dev/v1alpha1"
FALCO_API = "/apis/instance.falcosecurity.dev/v1alpha1"
RULES_REPOSITORY = "falcosecurity/rules/falco-rules"
PLUGIN_REPOSITORY = "falcosecurity/plugins/plugin/container"
EDITED_RULES = (
    "- rule: edited_in_the_demo\n  desc: an edit of seed example 05, shown arriving by the live view\n"
    "  condition: evt.type = open and proc.name = nope\n  output: edited (proc=%proc.name)\n  priority: INFO\n"
)
INLINE_RULES_FILE = "rules.d/50-03-falco-rules-inline.yaml"
OCI_RULES = b"""- rule: demo_netcat_started
  desc: a rule delivered from the OCI registry (seed example 04)
  condition: evt.type = execve and proc.name = nc
  output: netcat started (cmdline=%proc.cmdline)
  priority: NOTICE
"""
Json = dict[str, Any]


def load_sample(name: str, namespace: str | None = NAMESPACE) -> Json:
    document: Json = YAML(typ="safe").load((SAMPLES / name).read_text())
    if namespace:
        document["metadata"]["namespace"] = namespace
    return document


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Node:
    name: str
    agent: AgentProcess
    falco: RunningFalco | None = None

    def files(self) -> dict[str, bytes]:
        """``rules.d/…``, ``config.d/…``, ``plugins/…`` as Falco sees them."""
        found: dict[str, bytes] = {}
        for label, directory in (("rules.d", self.agent.rules_dir), ("config.d", self.agent.config_dir),
                                 ("plugins", self.agent.plugins_dir)):  # fmt: skip
            found |= {f"{label}/{name}": data for name, data in self.agent.files(directory).items()}
        return found

    async def loaded(self) -> tuple[dict[str, str], dict[str, str]]:
        """What Falco reports: rules files (name → sha256) and plugins (name → version)."""
        if self.falco is None or not self.falco.alive():
            return {}, {}
        try:
            return await self.falco.rules_hashes(), (await self.falco.versions()).get("plugin_versions") or {}
        except httpx.HTTPError:
            return {}, {}


@dataclass
class Demo:
    plane: ControlPlane
    workdir: Path
    out: TextIO = sys.stdout
    nodes: dict[str, Node] = field(default_factory=dict)
    outcomes: list[tuple[str, bool, str]] = field(default_factory=list)
    changes: list[tuple[str, str, str]] = field(default_factory=list)
    """What the live view printed: (node, path, state)."""
    registry: Registry | None = None
    operator: subprocess.Popen[bytes] | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    # -- start ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Install, start the operator and the registry, push the artifacts seed examples 04 and 06 name."""
        install(self.plane.kubectl)
        kubeconfig = self.workdir / "operator.kubeconfig"
        prepare_operator(self.plane, kubeconfig, token_seconds=24 * 3600, install=False)
        probe_port = free_port()
        log_path = self.workdir / "falco-operator.log"
        with log_path.open("ab") as log:
            self.operator = popen(operator_command(kubeconfig, free_port(), probe_port, "--log-format=text"),
                                  stdout=log, env=operator_env(), cwd=ROOT)  # fmt: skip
        wait_ready(probe_port, lambda: self.operator is not None and self.operator.poll() is None,
                   lambda: f"see {log_path}")  # fmt: skip
        self.registry = start_registry(self.workdir / "registry", tls=True, auth=False)
        push_rules(self.registry, RULES_REPOSITORY, "latest", OCI_RULES)
        plugin = find_falco().container_plugin.read_bytes()
        other = "arm64" if machine_architecture() == "amd64" else "amd64"
        push_plugin(self.registry, PLUGIN_REPOSITORY, "0.2.4", {machine_architecture(): plugin, other: b"\x7fELF"})

    async def start_nodes(self, api: kr8s.asyncio.Api) -> None:
        """For each Falco pod: the agent (ready first, as a native sidecar is) and then real Falco."""
        pods = await wait_falco_pods(api, NAMESPACE, FALCO)
        assert self.registry is not None
        assert self.registry.ca is not None
        for name in NODES:
            metadata = pods[name]["metadata"]
            port = free_port()
            agent = AgentProcess(self.plane, self.workdir / "nodes" / name, NAMESPACE, FALCO, metadata["name"],
                                 metadata["uid"], name, falco_url=f"http://127.0.0.1:{port}",
                                 extra_args=(f"--registry-ca={self.registry.ca}",
                                             "--allow-private-registries"))  # fmt: skip
            agent.start()
            self.nodes[name] = Node(name, agent)
        for node in self.nodes.values():
            await node.agent.wait_ready()
            web_port = int(node.agent.falco_url.rsplit(":", 1)[1])
            falco = run_falco(node.agent.workdir / "falco", node.agent.rules_dir, node.agent.config_dir,
                              node.agent.plugins_dir, web_port=web_port)  # fmt: skip
            node.falco = self._stack.enter_context(falco)

    def stop(self) -> None:
        self._stack.close()
        for node in self.nodes.values():
            node.agent.stop()
        if self.operator is not None:
            terminate(self.operator, grace=20)
        if self.registry is not None:
            self.registry.stop()

    # -- the seed examples ---------------------------------------------------------------------------------------

    def apply(self, document: Json) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl("apply", "-f", "-", stdin=json.dumps(document), check=False)

    async def check(self, seed: str, what: str, probe: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
        async def once() -> bool:
            return await probe()

        try:
            await wait_for(once, bool, timeout=timeout, interval=0.25, what=what)
            self.outcomes.append((seed, True, what))
        except WaitTimeout:
            self.outcomes.append((seed, False, f"{what}: not within {timeout:.0f}s"))
        mark = "ok  " if self.outcomes[-1][1] else "FAIL"
        print(f"  {mark} {seed}: {self.outcomes[-1][2]}", file=self.out, flush=True)

    async def on_every_node(self, path: str, data: bytes | None = None, loaded: bool = True) -> bool:
        for node in self.nodes.values():
            found = node.files().get(path)
            if found is None or (data is not None and found != data):
                return False
            if loaded and path.startswith("rules.d/"):
                rules, _ = await node.loaded()
                if rules.get(path.removeprefix("rules.d/")) != sha256_hex(found):
                    return False
        return True

    async def seeds(self, api: kr8s.asyncio.Api) -> None:
        print("Seed examples:", file=self.out, flush=True)

        async def falco_status(namespace: str, name: str) -> Json:
            status, body = await request(api, "GET", f"{FALCO_API}/namespaces/{namespace}/falcos/{name}")
            return (body or {}).get("status") or {} if status == 200 else {}

        def condition(status: Json, kind: str) -> str:
            return next((c["status"] for c in status.get("conditions") or [] if c["type"] == kind), "")

        self.apply(load_sample("01-falco-sample.yaml"))
        await self.start_nodes(api)

        async def sample_available() -> bool:
            status = await falco_status(NAMESPACE, FALCO)
            return condition(status, "Reconciled") == "True" and condition(status, "Available") == "True"

        await self.check("01", "DaemonSet falco-sample on node1-3, Reconciled and Available; Falco runs with no "
                               "rules", sample_available)  # fmt: skip

        self.apply(load_sample("06-plugin-container.yaml") | {"spec": self._oci("06-plugin-container.yaml")})

        async def plugin_loaded() -> bool:
            loaded = [await node.loaded() for node in self.nodes.values()]
            fragment = b"init_config:\n    label_max_len: '100'\n    with_size: 'false'\n"
            written = all(fragment in node.files().get("config.d/99-03-plugins-config-inline.yaml", b"")
                          for node in self.nodes.values())  # fmt: skip
            return written and all("container" in plugins for _, plugins in loaded)

        await self.check("06", "container-<sha256>.so pulled to plugins/, init_config rendered, Falco loaded the "
                               "plugin on every node", plugin_loaded)  # fmt: skip

        self.apply(load_sample("04-rulesfile-oci.yaml") | {"spec": self._oci("04-rulesfile-oci.yaml")})
        await self.check("04", "pulled from the registry: rules.d/50-01-falco-rules-oci.yaml loaded on every node",
                         lambda: self.on_every_node("rules.d/50-01-falco-rules-oci.yaml", OCI_RULES))  # fmt: skip

        selector = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}}
        self.plane.kubectl("patch", "falco", FALCO, "-n", NAMESPACE, "--type=merge", "-p",
                           json.dumps({"spec": {"falcoRules": selector}}))  # fmt: skip
        self.apply(load_sample("09-falcorule-bash.yaml"))

        generated = f"rules.d/60-03-{FALCO}-falcorules-{NAMESPACE}-inline.yaml"

        async def falcorule_loaded() -> bool:
            ok = await self.on_every_node(generated)
            return ok and all(b"bash" in n.files()[generated] for n in self.nodes.values())

        await self.check("09", f"FalcoRule bash (Falco {FALCO} selects namespace default) loaded on every node from "
                               f"{generated}", falcorule_loaded)  # fmt: skip

        inline = load_sample("05-rulesfile-inline.yaml")
        self.plane.kubectl("delete", "rulesfile", "falco-rules", "-n", NAMESPACE, "--wait=true")  # 05 replaces 04
        self.apply(inline)
        text = str(inline["spec"]["ociArtifact"]["inline"]).encode()
        await self.check("05", f"{INLINE_RULES_FILE} (shell_in_container) loaded on every node",
                         lambda: self.on_every_node(INLINE_RULES_FILE, text))  # fmt: skip

        async def collision_reported() -> bool:
            _, body = await request(api, "GET", f"{ARTIFACT_API}/namespaces/{NAMESPACE}/falcorules/bash")
            accepted: Json = next((c for c in ((body or {}).get("status") or {}).get("conditions") or []
                             if c["type"] == "Accepted"), {})  # fmt: skip
            return accepted.get("reason") == "NameCollision"

        await self.check("09", "with 05's rule of the same name now in the cluster's rules, the FalcoRule is refused "
                               "(Accepted=False NameCollision) and its rule leaves the generated file",
                         collision_reported)  # fmt: skip

        self.apply(load_sample("07-config-label-selector.yaml"))

        async def node1_only() -> bool:
            name = "config.d/50-03-config-label-selector-inline.yaml"
            present = {node: name in n.files() for node, n in self.nodes.items()}
            return present == {"node1": True, "node2": False, "node3": False}

        await self.check("07", "config.d/50-03-config-label-selector-inline.yaml on node1 only", node1_only)

        refused = self.apply(load_sample("08-rulesfile-selector-invalid-name.yaml"))

        async def was_refused() -> bool:
            return refused.returncode != 0 and "a lowercase RFC 1123 subdomain" in refused.stderr

        await self.check("08", "refused by the API server: " + (refused.stderr.strip().splitlines() or [""])[-1][:150],
                         was_refused, timeout=1)  # fmt: skip

        self.plane.kubectl("create", "namespace", "falco-deployment", check=False)
        self.apply(load_sample("02-falco-deployment.yaml", "falco-deployment"))

        async def deployment_ready() -> bool:
            status, body = await request(api, "GET", "/apis/apps/v1/namespaces/falco-deployment/deployments/"
                                                     "falco-deployment")  # fmt: skip
            config = await request(api, "GET", "/api/v1/namespaces/falco-deployment/configmaps/falco-deployment")
            nodriver = config[0] == 200 and "kind: nodriver" in config[1]["data"]["falco.yaml"]
            return status == 200 and body["spec"]["replicas"] == 1 and nodriver

        await self.check("02", "Deployment falco-deployment, 1 replica, engine nodriver", deployment_ready)
        self.apply(load_sample("03-falco-custom-podtemplate.yaml", "falco-deployment"))

        async def custom_images() -> bool:
            status, body = await request(api, "GET", "/apis/apps/v1/namespaces/falco-deployment/deployments/"
                                                     "falco-deployment")  # fmt: skip
            if status != 200:
                return False
            spec = body["spec"]["template"]["spec"]
            images = {c["name"]: c for c in spec.get("containers", []) + spec.get("initContainers", [])}
            falco, agent = images.get("falco", {}), images.get("artifact-operator", {})
            return (falco.get("image"), falco.get("tty"), agent.get("image"), agent.get("imagePullPolicy")) == (
                "my-custom-falco-image:latest",
                True,
                "my-custom-artifact-image:latest",
                "Always",
            )

        await self.check("03", "the user's images, tty and imagePullPolicy win; the rest stays default",
                         custom_images)  # fmt: skip

    def _oci(self, sample: str) -> Json:
        """The sample's spec pointing at the loopback registry (same repository path)."""
        assert self.registry is not None
        spec: Json = load_sample(sample)["spec"]
        reference = str(spec["ociArtifact"]["reference"])
        spec["ociArtifact"]["reference"] = f"{self.registry.host}/{reference.split('/', 1)[1]}"
        return spec

    # -- the summary and the live view ----------------------------------------------------------------------------

    async def summary(self, api: kr8s.asyncio.Api) -> str:
        lines = ["", "Falco workloads:"]
        _, falcos = await request(api, "GET", f"{FALCO_API}/falcos")
        for item in (falcos or {}).get("items", []):
            status = item.get("status") or {}
            conditions = " ".join(f"{c['type']}={c['status']}" for c in status.get("conditions") or [])
            lines.append(f"  {item['metadata']['namespace']}/{item['metadata']['name']}: {status.get('resourceType')} "
                         f"{status.get('availableReplicas', 0)}/{status.get('desiredReplicas', 0)} available; "
                         f"{conditions}")  # fmt: skip
        lines.append(f"Files on each node (Falco {NAMESPACE}/{FALCO}):")
        for node in self.nodes.values():
            rules, plugins = await node.loaded()
            for path, data in sorted(node.files().items()):
                if path.startswith("rules.d/"):
                    state = "loaded" if rules.get(path.removeprefix("rules.d/")) == sha256_hex(data) else "NOT loaded"
                elif path.startswith("plugins/"):
                    state = "loaded" if plugins else "NOT loaded"
                else:
                    state = "written (Falco does not report config fragments)"
                lines.append(f"  {node.name}  {path:<58} sha256 {sha256_hex(data)[:12]}  {state}")
        lines.append("Artifacts:")
        for plural in ("rulesfiles", "plugins", "configs", "falcorules"):
            _, listing = await request(api, "GET", f"{ARTIFACT_API}/{plural}")
            for item in (listing or {}).get("items", []):
                status = item.get("status") or {}
                programmed: Json = next((c for c in status.get("conditions") or [] if c["type"] == "Programmed"), {})
                nodes = status.get("nodes") or {}
                where = f"{item['metadata']['namespace']}/{item['metadata']['name']}"
                counts = f"{nodes.get('installed', '-')}/{nodes.get('targeted', '-')}"
                lines.append(f"  {item['kind']:<10} {where:<34} Programmed={programmed.get('status', '?'):<6} "
                             f"installed/targeted={counts}")  # fmt: skip
        passed = sum(1 for _, ok, _ in self.outcomes if ok)
        lines.append(f"Seed examples: {passed}/{len(self.outcomes)} as expected")
        return "\n".join(lines)

    async def watch(
        self, stop: anyio.Event, interval: float = 0.5, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Print each change of a node's files, and when Falco has loaded it, until ``stop``; started once it has
        taken its first look."""
        seen: dict[tuple[str, str], str] = {}
        for node in self.nodes.values():
            rules, _ = await node.loaded()
            for path, data in node.files().items():
                seen[(node.name, path)] = self._state(path, data, rules)
        task_status.started()
        while not stop.is_set():
            with anyio.move_on_after(interval):
                await stop.wait()
            for node in self.nodes.values():
                rules, _ = await node.loaded()
                files = node.files()
                for path, data in files.items():
                    state = self._state(path, data, rules)
                    if seen.get((node.name, path)) != state:
                        seen[(node.name, path)] = state
                        self._changed(node.name, path, state)
                for key in [k for k in seen if k[0] == node.name and k[1] not in files]:
                    del seen[key]
                    self._changed(node.name, key[1], "removed")

    def _changed(self, node: str, path: str, state: str) -> None:
        self.changes.append((node, path, state))
        print(f"  {node}  {path}  {state}", file=self.out, flush=True)

    async def edit_shows_up_live(self) -> None:
        """Edit seed 05's Rulesfile and check that the live view shows the new content loaded on every node."""
        print("Live view (an edit of Rulesfile falco-rules):", file=self.out, flush=True)
        digest = sha256_hex(EDITED_RULES.encode())[:12]
        stop = anyio.Event()
        async with anyio.create_task_group() as group:
            await group.start(self.watch, stop)
            edit = {"spec": {"ociArtifact": {"inline": EDITED_RULES}}}
            self.plane.kubectl("patch", "rulesfile", "falco-rules", "-n", NAMESPACE, "--type=merge", "-p",
                               json.dumps(edit))  # fmt: skip

            async def shown_loaded() -> bool:
                return {node for node, path, state in self.changes
                        if path == INLINE_RULES_FILE and state == f"sha256 {digest}  loaded"} == set(NODES)  # fmt: skip

            await self.check("live", f"the edit ({INLINE_RULES_FILE}, sha256 {digest}) shown loaded by Falco on "
                                     f"{', '.join(NODES)}", shown_loaded, timeout=60)  # fmt: skip
            stop.set()

    @staticmethod
    def _state(path: str, data: bytes, rules: dict[str, str]) -> str:
        digest = sha256_hex(data)
        if path.startswith("rules.d/"):
            loaded = rules.get(path.removeprefix("rules.d/")) == digest
            return f"sha256 {digest[:12]}  {'loaded' if loaded else 'not loaded yet'}"
        return f"sha256 {digest[:12]}"


def control_plane(directory: Path) -> ControlPlane:
    """The control plane ``make controlplane`` runs in ``directory``, or a new one whose processes end with the demo
    (however it ends)."""
    if (directory / STATE_FILE).exists():
        plane = ControlPlane.attach(directory)
        if plane.is_running("kube-apiserver"):
            return plane
        plane.stop()
        shutil.rmtree(directory)
    return start_cluster(directory, NODES)


async def run(directory: Path, *, once: bool = False) -> int:
    plane = control_plane(directory)
    demo = Demo(plane, directory / "demo")
    demo.workdir.mkdir(parents=True, exist_ok=True)
    api = await kr8s.asyncio.api(kubeconfig=str(plane.kubeconfig), namespace=NAMESPACE)
    try:
        demo.start()
        await demo.seeds(api)
        print(await demo.summary(api), flush=True)
        if once:
            await demo.edit_shows_up_live()
            passed = sum(1 for _, ok, _ in demo.outcomes if ok)
            print(f"\nEvery check: {passed}/{len(demo.outcomes)} as expected (--once: stopping)", flush=True)
            return 0 if passed == len(demo.outcomes) else 1
        print(
            f"\nThe demo runs until Ctrl-C. In another terminal:\n"
            f"  export KUBECONFIG={plane.kubeconfig}\n"
            f"  kubectl edit rulesfile falco-rules -n {NAMESPACE}     # change the rule, save, and watch it arrive "
            f"here\n"
            f"  kubectl get falcosecurity -A\n"
            f"Logs: {demo.workdir} (operator, nodes/<node>/agent.log, nodes/<node>/falco/falco.log)\n",
            flush=True,
        )
        stop = anyio.Event()
        async with anyio.create_task_group() as group:

            async def signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                    async for _ in received:
                        stop.set()
                        return

            async def control_plane_gone() -> None:
                while not stop.is_set():
                    await anyio.sleep(2)
                    if not plane.is_running("kube-apiserver"):
                        print("the control plane stopped (make controlplane-down)", flush=True)
                        stop.set()

            group.start_soon(signals)
            group.start_soon(control_plane_gone)
            await demo.watch(stop)
            group.cancel_scope.cancel()
        return 0 if all(ok for _, ok, _ in demo.outcomes) else 1
    finally:
        demo.stop()
        if api._session is not None:
            await api._session.aclose()
        if plane.is_running("kube-apiserver"):
            plane.stop()
        print("stopped everything", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--once", action="store_true",
                        help="after the summary, check that an edit shows up live, then stop (exit 0 when every "
                             "check passed)")  # fmt: skip
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=r"Kubernetes version .* is not supported", category=UserWarning)
    # Absolute from here on: Falco, the agents and the operator run in working directories of their own.
    directory = Path(os.environ.get("DEMO_DIR", str(DEFAULT_DIR))).absolute()
    return anyio.run(partial(run, directory, once=args.once))


if __name__ == "__main__":
    sys.exit(main())
