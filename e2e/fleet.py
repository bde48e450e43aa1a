"""A fleet of agents: one agent process per simulated node for the pods of one Falco, real Falco on the first
node and stand-ins serving Falco's web endpoints on the others. Shared by the scale tests and the benchmarks.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .agent import AgentProcess
from .controlplane import ControlPlane
from .controlplane.cluster import free_port
from .falco import FalcoBinaries, RunningFalco, run_falco
from .falco_standin import FalcoStandIn

Json = dict[str, Any]
_REQUEST = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Fleet:
    agents: dict[str, AgentProcess]
    stand_ins: dict[str, FalcoStandIn] = field(default_factory=dict)
    falco: RunningFalco | None = None
    """Real Falco on the first node, when binaries were given."""


@asynccontextmanager
async def agent_fleet(
    plane: ControlPlane, workdir: Path, namespace: str, falco: str, pods: dict[str, Json], nodes: list[str], *,
    binaries: FalcoBinaries | None = None, python: str = sys.executable, extra_args: tuple[str, ...] = (),
    start_parallel: int = 8,
) -> AsyncIterator[Fleet]:  # fmt: skip
    """Agents for ``pods`` on ``nodes``, all ready when the block starts, stopped when it ends."""
    first_port = free_port()
    faked = nodes[1:] if binaries else nodes
    stand_ins = {node: FalcoStandIn(workdir / node / "rules.d") for node in faked}
    agents = {
        node: AgentProcess(plane, workdir / node, namespace, falco, pods[node]["metadata"]["name"],
                           pods[node]["metadata"]["uid"], node, python=python, extra_args=extra_args,
                           falco_url=stand_ins[node].url if node in stand_ins else f"http://127.0.0.1:{first_port}")
        for node in nodes
    }  # fmt: skip
    async with AsyncExitStack() as stack, anyio.create_task_group() as group:
        for stand_in in stand_ins.values():
            await group.start(stand_in.run)
        stack.callback(_stop_all, agents)
        # Start in waves: a hundred interpreters starting at once on two cores would each take a minute.
        names = list(agents)
        for start in range(0, len(names), start_parallel):
            wave = [agents[name] for name in names[start : start + start_parallel]]
            for agent in wave:
                agent.start()
            for agent in wave:
                await agent.wait_ready(timeout=120)
        fleet = Fleet(agents, stand_ins)
        if binaries:
            first = agents[nodes[0]]
            running = run_falco(workdir / "falco", first.rules_dir, first.config_dir, first.plugins_dir,
                              binaries=binaries, web_port=first_port)  # fmt: skip
            fleet.falco = stack.enter_context(running)
        try:
            yield fleet
        finally:
            group.cancel_scope.cancel()


def _stop_all(agents: dict[str, AgentProcess]) -> None:
    for agent in agents.values():
        agent.stop()


def request_counts(metrics: str) -> Counter[tuple[str, str]]:
    """``apiserver_request_total`` by (verb, resource[/subresource]), from the API server's ``/metrics``."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in metrics.splitlines():
        match = _REQUEST.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[(labels.get("verb", ""), resource)] += int(float(match["value"]))
    return counts


def api_requests(plane: ControlPlane) -> Counter[tuple[str, str]]:
    return request_counts(plane.kubectl("get", "--raw", "/metrics").stdout)
