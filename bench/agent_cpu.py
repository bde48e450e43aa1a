"""Benchmark: the artifact agent's CPU per update, and where it goes.

A control plane of its own with N simulated nodes, the operator, one Falco (a pod per node), N agents with Falco
stand-ins (``e2e/fleet.py``), A quiet Rulesfiles besides, then U updates of one shared Rulesfile, each until
``Programmed=True`` with N/N loaded. Prints each agent's CPU per update (user + system, from ``/proc``: the event,
the pass, the swap, the report, Falco polls until it confirms) and the agents' resident memory after.

``--profile``: the agents run under cProfile (``bench/profiled_agent.py``) during the updates only, and the
functions taking most of their time are printed (cumulative, all agents added up). Profiling slows the agents:
take the CPU figure from a run without it.

Run: ``.venv/bin/python -m bench.agent_cpu [--nodes 10] [--artifacts 50] [--updates 30] [--profile]
[--python PATH] [--keep-profiles DIR]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import shutil
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


def profiling_python(python: str, workdir: Path, module: str = "bench.profiled_agent") -> str:
    """An interpreter wrapper that runs the agent's command under ``bench.profiled_agent`` (or
    ``bench.accounted_agent``), which write ``agent.PID.out`` in ``workdir``."""
    wrapper = workdir / "profiled-python"
    out = f"{workdir}/agent.$$.out"
    wrapper.write_text(f'#!/bin/sh\n# called as: python -m artifact_agent ARGS\nshift 2\n'
                       f'AGENT_PROFILE="{out}" AGENT_ACCOUNT="{out}" exec {python} -m {module} "$@"\n')  # fmt: skip
    wrapper.chmod(0o755)
    return str(wrapper)


def print_accounts(files: list[Path], updates: int) -> None:
    """CPU per update of one agent by task, callback and worker-thread function (``bench.accounted_agent``)."""
    added: dict[str, list[float]] = {}
    for path in files:
        for name, (seconds, steps) in json.loads(path.read_text()).items():
            entry = added.setdefault(name, [0.0, 0])
            entry[0] += seconds
            entry[1] += steps
    scale = 1 / updates / len(files)
    print(f"{'ms/update':>9} {'steps':>6}  where (one agent, thread CPU time)")
    for name, (seconds, steps) in sorted(added.items(), key=lambda item: -item[1][0]):
        print(f"{seconds * 1000 * scale:9.2f} {steps * scale:6.1f}  {name}")


def signal_agents(fleet: Fleet, signum: int) -> None:
    for agent in fleet.agents.values():
        if agent.process:
            os.kill(agent.process.pid, signum)


def user_system(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of the processes so far, added up."""
    user = system = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11]) / os.sysconf("SC_CLK_TCK")
        system += int(fields[12]) / os.sysconf("SC_CLK_TCK")
    return user, system


def agent_pids(fleet: Fleet) -> list[int]:
    return [agent.process.pid for agent in fleet.agents.values() if agent.process]


async def idle_cpu(fleet: Fleet, seconds: float) -> float:
    """ms of CPU per second of one agent with nothing changing."""
    pids = agent_pids(fleet)
    before = sum(cpu_seconds(pid) for pid in pids)
    await anyio.sleep(seconds)
    return (sum(cpu_seconds(pid) for pid in pids) - before) / seconds / len(pids) * 1000


async def updates_cpu(api: kr8s.asyncio.Api, fleet: Fleet, nodes: int, updates: int) -> tuple[float, float, float]:
    """ms of CPU per update per agent: in all (as ``bench.artifacts_at_scale`` counts it), user, system."""
    pids = agent_pids(fleet)
    before = sum(cpu_seconds(pid) for pid in pids)
    user, system = user_system(pids)
    for index in range(updates):
        await one_update(api, fleet, nodes, index, index + 2, interval=0.02)
    await anyio.sleep(1)  # the last Falco polls after the swap
    user_after, system_after = user_system(pids)
    scale = 1000 / updates / len(pids)
    total = (sum(cpu_seconds(pid) for pid in pids) - before) * scale
    return total, (user_after - user) * scale, (system_after - system) * scale


async def main(nodes: int, artifacts: int, updates: int, profile: bool, given_python: str | None,
               keep_profiles: Path | None, account: bool) -> None:  # fmt: skip
    python = given_python or runtime_python()
    names = [f"n{index:03d}" for index in range(1, nodes + 1)]
    with tempfile.TemporaryDirectory() as workdir_name:
        workdir = Path(workdir_name)
        agent_python = python
        if profile or account:
            agent_python = profiling_python(
                python, workdir, "bench.profiled_agent" if profile else "bench.accounted_agent"
            )
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
                    await anyio.sleep(1)
                    idle = await idle_cpu(fleet, 2)
                    if profile or account:
                        signal_agents(fleet, signal.SIGUSR1)
                    started = time.monotonic()
                    per_update, user, system = await updates_cpu(api, fleet, nodes, updates)
                    took = time.monotonic() - started
                    if profile or account:
                        signal_agents(fleet, signal.SIGUSR2)
                        await anyio.sleep(2)
                    rss = [rss_mib(agent.process.pid) for agent in fleet.agents.values() if agent.process]
                if api._session is not None:
                    await api._session.aclose()
        finally:
            plane.stop()
        mode = " (profiled)" if profile else " (accounted)" if account else ""
        print(f"machine: {os.cpu_count()} cores; {nodes} agents (Falco stand-ins), {artifacts} Rulesfiles, "
              f"{updates} updates of one in {took:.0f} s{mode}")  # fmt: skip
        print(f"CPU of one agent per update: {per_update:.1f} ms; resident memory after: "
              f"{min(rss):.0f}-{max(rss):.0f} MiB")  # fmt: skip
        print(f"of which user {user:.1f} ms, system {system:.1f} ms; one agent idle before: {idle:.2f} ms/s")
        if profile:
            files = sorted(str(path) for path in workdir.glob("agent.*.out"))  # noqa: ASYNC240
            out = io.StringIO()
            stats = pstats.Stats(*files, stream=out)
            stats.sort_stats("cumulative").print_stats(45)
            stats.sort_stats("tottime").print_stats(30)
            print(out.getvalue())
            if keep_profiles:
                keep_profiles.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
                for name in files:
                    shutil.copy(name, keep_profiles)
        if account:
            print_accounts(sorted(workdir.glob("agent.*.out")), updates)  # noqa: ASYNC240


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--artifacts", type=int, default=50, help="Rulesfiles in all (one of them updated)")
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--python",
        help="an interpreter with the runtime dependencies, used as it is (the agents' "
        "code still comes from this tree: PYTHONPATH); default: .venv-runtime, made or updated",
    )
    parser.add_argument("--account", action="store_true", help="CPU per update by task and thread function")
    parser.add_argument("--keep-profiles", type=Path, help="with --profile: copy the agents' pstats files here")
    arguments = parser.parse_args()
    anyio.run(main, arguments.nodes, arguments.artifacts, arguments.updates, arguments.profile, arguments.python,
              arguments.keep_profiles, arguments.account)  # fmt: skip
