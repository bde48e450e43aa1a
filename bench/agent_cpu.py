"""Benchmark: the artifact agent's CPU per update, and where it goes.

A control plane of its own with N simulated nodes, the operator, one Falco (a pod per node), N agents with Falco
stand-ins (``e2e/fleet.py``), A quiet Rulesfiles besides, then U updates of one shared Rulesfile, each until
``Programmed=True`` with N/N loaded. Prints each agent's CPU per update (user + system, from ``/proc``: the event,
the pass, the swap, the report, Falco polls until it confirms) and the agents' resident memory after.

``--profile``: the agents run under cProfile (``bench/profiled_agent.py``) during the updates only, and the
functions taking most of their time are printed (cumulative, all agents added up). Profiling slows the agents:
take the CPU figure from a run without it.

Run: ``.venv/bin/python -m bench.agent_cpu [--nodes 10] [--artifacts 50] [--updates 30] [--profile]``.
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import signal
import tempfile
import time
from pathlib import Path

import anyio
import kr8s.asyncio

from bench.artifacts_at_scale import ARTIFACTS, NAMESPACE, QUIET, cpu_seconds, one_update, until_programmed
from bench.falco_reconcile import rss_mib
from bench.runtime import runtime_python
from e2e.agent import falco_pods, rule, rulesfile
from e2e.controlplane import start_cluster
from e2e.fleet import Fleet, agent_fleet
from e2e.kube import call
from e2e.operator import install_crds, run_operator


def profiling_python(python: str, workdir: Path) -> str:
    """An interpreter wrapper that runs the agent's command under ``bench.profiled_agent``."""
    wrapper = workdir / "profiled-python"
    profile = f"{workdir}/agent.$$.prof"
    wrapper.write_text(f'#!/bin/sh\n# called as: python -m artifact_agent ARGS\nshift 2\n'
                       f'AGENT_PROFILE="{profile}" exec {python} -m bench.profiled_agent "$@"\n')  # fmt: skip
    wrapper.chmod(0o755)
    return str(wrapper)


def signal_agents(fleet: Fleet, signum: int) -> None:
    for agent in fleet.agents.values():
        if agent.process:
            os.kill(agent.process.pid, signum)


async def updates_cpu(api: kr8s.asyncio.Api, fleet: Fleet, nodes: int, updates: int) -> float:
    """ms of CPU per update per agent."""
    pids = [agent.process.pid for agent in fleet.agents.values() if agent.process]
    before = sum(cpu_seconds(pid) for pid in pids)
    for index in range(updates):
        await one_update(api, fleet, nodes, index, index + 2, interval=0.02)
    await anyio.sleep(1)  # the last Falco polls after the swap
    return (sum(cpu_seconds(pid) for pid in pids) - before) / updates / len(pids) * 1000


async def main(nodes: int, artifacts: int, updates: int, profile: bool) -> None:
    python = runtime_python()
    names = [f"n{index:03d}" for index in range(1, nodes + 1)]
    with tempfile.TemporaryDirectory() as workdir_name:
        workdir = Path(workdir_name)
        agent_python = profiling_python(python, workdir) if profile else python
        plane = start_cluster(workdir / "plane", nodes=tuple(names))
        try:
            install_crds(plane)
            with run_operator(plane, workdir / "operator"):
                api = await kr8s.asyncio.api(kubeconfig=str(plane.kubeconfig))
                await call(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
                pods = await falco_pods(api, NAMESPACE, "falco", nodes=nodes)
                for index in range(artifacts - 1):
                    await call(api, "POST", ARTIFACTS.format(ns=NAMESPACE, plural="rulesfiles"),
                               body=rulesfile(f"quiet-{index:03d}", rule(f"quiet_{index:03d}", QUIET)))  # fmt: skip
                await call(api, "POST", ARTIFACTS.format(ns=NAMESPACE, plural="rulesfiles"),
                           body=rulesfile("shared", rule("shared", QUIET)))  # fmt: skip
                async with agent_fleet(plane, workdir / "agents", NAMESPACE, "falco", pods, names,
                                       python=agent_python) as fleet:  # fmt: skip
                    await until_programmed(api, "shared", 1, nodes)
                    await anyio.sleep(3)
                    if profile:
                        signal_agents(fleet, signal.SIGUSR1)
                    started = time.monotonic()
                    per_update = await updates_cpu(api, fleet, nodes, updates)
                    took = time.monotonic() - started
                    if profile:
                        signal_agents(fleet, signal.SIGUSR2)
                        await anyio.sleep(2)
                    rss = [rss_mib(agent.process.pid) for agent in fleet.agents.values() if agent.process]
                if api._session is not None:
                    await api._session.aclose()
        finally:
            plane.stop()
        print(f"machine: {os.cpu_count()} cores; {nodes} agents (Falco stand-ins), {artifacts} Rulesfiles, "
              f"{updates} updates of one in {took:.0f} s{' (profiled)' if profile else ''}")  # fmt: skip
        print(f"CPU of one agent per update: {per_update:.1f} ms; resident memory after: "
              f"{min(rss):.0f}-{max(rss):.0f} MiB")  # fmt: skip
        if profile:
            files = sorted(str(path) for path in workdir.glob("agent.*.prof"))  # noqa: ASYNC240
            out = io.StringIO()
            stats = pstats.Stats(*files, stream=out)
            stats.sort_stats("cumulative").print_stats(45)
            stats.sort_stats("tottime").print_stats(30)
            print(out.getvalue())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--artifacts", type=int, default=50, help="Rulesfiles in all (one of them updated)")
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--profile", action="store_true")
    arguments = parser.parse_args()
    anyio.run(main, arguments.nodes, arguments.artifacts, arguments.updates, arguments.profile)
