"""One worker of the fleet simulation: many agents' API behaviour in one process, without Falco or files.

Each simulated agent is the agent itself (``artifact_agent.agent.Agent``: its informers with their selectors, its
debounce, its selection of the artifacts that apply, its ``Reporter``) with one part replaced: the pass. Instead of
resolving sources, validating, writing files and asking Falco, a simulated pass takes the selected artifacts as
delivered and confirmed (state ``Loaded``, the SHA-256 of the file their inline content would be) and publishes
``report_status`` of that through the agent's ``Reporter``: one report per change, the common case once Falco
confirms within the agent's window. Every agent has its own pod-bound token, hence its own connections.

Run by ``bench.fleet_simulation``: ``python -m bench.simulated_agents SPEC.json`` where SPEC holds the server,
CA file, namespace, Falco name and ``agents`` (pod, uid, node, token). It prints ``ready N`` once every agent has
listed, watched and published its first report (after a ``base`` line: its resident set before any agent), then
``stats`` lines on SIGUSR1; SIGTERM stops it.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from artifact_agent.agent import Agent, Settings, _start_informer
from artifact_agent.cli import FIELD_MANAGER
from artifact_agent.materializer import Directories
from artifact_agent.report import Identity, report_status
from falco_operator.api.plain import Config, Rulesfile
from falco_operator.api.plain_report import FalcoProbe
from falco_operator.artifacts import Artifact, ArtifactKey, Delivered, Outcome
from falco_operator.artifacts.naming import CONFIG_DIR, RULES_DIR, Medium, artifact_file_name
from falco_operator.artifacts.plugins import ARTIFACT_PLUGINS_DIR
from falco_operator.artifacts.yamldoc import dump_yaml
from falco_operator.kube import Client, EventHandler, RuntimeMetrics
from falco_operator.kube.transport import Credentials, DirectTransport
from falco_operator.resources import registry

Json = dict[str, Any]
DIRECTORIES = Directories(Path("/etc/falco/rules.d"), Path("/etc/falco/config.d"), Path(ARTIFACT_PLUGINS_DIR))
FALCO = FalcoProbe(reachable=True, version="0.44.1")
START_WAVE = 20
"""Agents started at once: a few thousand lists and report creations at the same instant would measure the
start-up storm of a whole fleet restarted together, not the fleet."""


def rendered(artifact: Artifact) -> Delivered:
    """What the agent would write for an artifact with inline content: its file, named as the planner names it."""
    if isinstance(artifact, Rulesfile):
        value: Any = artifact.spec.inline()
        directory = RULES_DIR
    elif isinstance(artifact, Config):
        value, directory = artifact.spec.config, CONFIG_DIR
    else:
        return Delivered()  # Plugins come from OCI: not simulated
    if value is None:
        return Delivered()
    data = value.encode() if isinstance(value, str) else dump_yaml(value)
    name = artifact_file_name(artifact.spec.priority, artifact.metadata.name or "", Medium.INLINE)
    return Delivered({(directory, name): data})


class SimulatedAgent(Agent):
    """The agent with a pass that delivers nothing but reports what it would have delivered, confirmed."""

    def __init__(self, client: Client, identity: Identity) -> None:
        settings = Settings(identity=identity, directories=DIRECTORIES, probe_address=None, falco_url=None)
        super().__init__(client, settings, RuntimeMetrics())
        self.passes = 0
        self.writes = 0
        self.started = anyio.Event()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The agent's start without probes, ConfigMap watches, OCI pulls, Falco polls or adopting the disk."""
        async with anyio.create_task_group() as group:
            for informer in self.informers:
                informer.add_handler(EventHandler(self._on_add, self._on_update, self._on_delete))
            async with anyio.create_task_group() as starting:
                for informer in self.informers:
                    starting.start_soon(_start_informer, group, informer)
            await self.reporter.load()
            task_status.started()
            await self._loop()

    async def _pass(self, first: bool) -> None:
        artifacts = self._selected()
        outcomes = [
            Outcome(ArtifactKey(artifact.kind, artifact.metadata.name or ""), artifact.metadata.generation,
                    "Loaded", rendered(artifact))
            for artifact in artifacts
        ]  # fmt: skip
        status = report_status(outcomes, DIRECTORIES.by_kind(), FALCO)
        self.passes += 1
        if await self.reporter.publish(status):
            self.writes += 1
        self.started.set()


@dataclass
class Spec:
    server: str
    ca_file: str
    namespace: str
    falco: str
    agents: list[Json]

    @classmethod
    def read(cls, path: Path) -> Spec:
        return cls(**json.loads(path.read_text()))


def build_agents(spec: Spec) -> list[SimulatedAgent]:
    # One TLS context per process (loading the CA per agent would cost memory the real fleet spreads over nodes);
    # a token, and so a client and connections, per agent.
    tls = Credentials(spec.server, ca_file=spec.ca_file).ssl_context()
    agents = []
    for entry in spec.agents:
        transport = DirectTransport(Credentials(spec.server, ca_file=spec.ca_file, token=entry["token"]), tls)
        client = Client(transport, field_manager=FIELD_MANAGER, registry=registry())
        identity = Identity(pod_name=entry["pod"], namespace=spec.namespace, pod_uid=entry["uid"],
                            node_name=entry["node"], instance=spec.falco)  # fmt: skip
        agents.append(SimulatedAgent(client, identity))
    return agents


def stats(agents: list[SimulatedAgent]) -> Json:
    return {"agents": len(agents), "passes": sum(a.passes for a in agents), "writes": sum(a.writes for a in agents),
            "failing": sum(1 for a in agents if not a.healthy()), "time": time.time()}  # fmt: skip


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def main(spec_path: Path) -> None:
    print(f"base {resident_bytes()}", flush=True)
    agents = build_agents(Spec.read(spec_path))
    async with anyio.create_task_group() as group:
        for start in range(0, len(agents), START_WAVE):
            wave = agents[start : start + START_WAVE]
            for agent in wave:
                group.start_soon(agent.run)
            for agent in wave:
                await agent.started.wait()
        print(f"ready {len(agents)}", flush=True)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1) as signals:
            async for received in signals:
                if received == signal.SIGUSR1:
                    print("stats " + json.dumps(stats(agents)), flush=True)
                    continue
                group.cancel_scope.cancel()
                break


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]))
