"""Benchmark: the artifact agent's resident memory and its time from start to ready.

Starts a local control plane with 3 simulated nodes and the operator (its own process and ServiceAccount),
creates a Falco, and runs one agent for one of its pods (its own process, the Falco's ServiceAccount token).
Prints the agent's resident memory idle (no artifacts) and with N inline artifacts, the time from process start
to ``/readyz`` with none and with N, and how long N artifacts created at once take to reach the disk.

The agent runs from a virtualenv with the project's runtime dependencies only (``.venv-runtime``, made on first
use), as in the image: the development tools in ``.venv`` would add modules the agent never loads in a pod.

Run: ``.venv/bin/python -m bench.agent [--artifacts 50]`` (figures depend on the machine; compare ratios
between runs on one machine). ``--python`` names an interpreter with the runtime dependencies to use as it is (the
agent's code always comes from this tree: ``PYTHONPATH``), e.g. a worktree's run with the main tree's
``.venv-runtime``, which is then neither made nor reinstalled.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import anyio
import kr8s.asyncio

from bench.falco_reconcile import rss_mib
from bench.runtime import compile_bytecode, runtime_python
from e2e.agent import AgentProcess, falco_pods, rule, rulesfile
from e2e.controlplane import start_cluster
from e2e.kube import call
from e2e.operator import install_crds, run_operator

ARTIFACTS = "/apis/artifact.falcosecurity.dev/v1alpha1/namespaces/{ns}/{plural}"


async def start_timed(agent: AgentProcess) -> float:
    started = time.monotonic()
    agent.start()
    await agent.wait_ready()
    return time.monotonic() - started


async def settled_rss(agent: AgentProcess) -> float:
    await anyio.sleep(5)  # let start-up garbage go before reading the resident set
    assert agent.process is not None
    return rss_mib(agent.process.pid)


async def main(artifacts: int, given_python: str | None) -> None:
    python = given_python or runtime_python()
    if given_python:
        compile_bytecode(given_python)
    with tempfile.TemporaryDirectory() as workdir:
        plane = start_cluster(Path(workdir) / "plane")
        try:
            install_crds(plane)
            with run_operator(plane, Path(workdir)):
                api = await kr8s.asyncio.api(kubeconfig=str(plane.kubeconfig))
                namespace = "bench"
                await call(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
                pods = await falco_pods(api, namespace, "falco")
                pod = pods["node1"]["metadata"]
                agent = AgentProcess(plane, Path(workdir) / "agent", namespace, "falco", pod["name"], pod["uid"],
                                     "node1", python=python)  # fmt: skip
                ready_empty = await start_timed(agent)
                idle = await settled_rss(agent)
                rules_count = artifacts * 4 // 5
                started = time.monotonic()
                async with anyio.create_task_group() as group:
                    for index in range(rules_count):
                        body = rulesfile(f"r{index:03d}", rule(f"rule_{index}"))
                        path = ARTIFACTS.format(ns=namespace, plural="rulesfiles")
                        group.start_soon(partial(call, api, "POST", path, body=body))
                    for index in range(artifacts - rules_count):
                        body = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Config",
                                "metadata": {"name": f"c{index:03d}"},
                                "spec": {"config": {"output_timeout": 2000 + index}}}  # fmt: skip
                        path = ARTIFACTS.format(ns=namespace, plural="configs")
                        group.start_soon(partial(call, api, "POST", path, body=body))
                while len(agent.files(agent.rules_dir)) + len(agent.files(agent.config_dir)) < artifacts:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                delivered = time.monotonic() - started
                busy = await settled_rss(agent)
                agent.stop()
                ready_full = await start_timed(agent)
                restarted = await settled_rss(agent)
                agent.stop()
                other = pods["node2"]["metadata"]
                fresh = AgentProcess(plane, Path(workdir) / "fresh", namespace, "falco", other["name"], other["uid"],
                                     "node2", python=python)  # fmt: skip
                ready_cold = await start_timed(fresh)
                fresh.stop()
        finally:
            plane.stop()
    print(f"machine: {os.cpu_count()} cores; one agent; {artifacts} inline artifacts ({rules_count} Rulesfiles, "
          f"{artifacts - rules_count} Configs)")  # fmt: skip
    print(f"start to ready, no artifacts        {ready_empty:6.2f} s")
    print(f"start to ready, {artifacts} artifacts, empty directories   {ready_cold:6.2f} s")
    print(f"start to ready, {artifacts} artifacts already on disk     {ready_full:6.2f} s")
    print(f"{artifacts} artifacts created at once, on disk after {delivered:6.2f} s")
    print(f"agent resident memory               {idle:.0f} MiB idle, {busy:.0f} MiB with {artifacts} artifacts, "
          f"{restarted:.0f} MiB restarted with them")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=50)
    parser.add_argument("--python", help="an interpreter with the runtime dependencies, used as it is")
    arguments = parser.parse_args()
    anyio.run(main, arguments.artifacts, arguments.python)
