"""Shared pieces of the agent tests: a Falco with its pods, agents for those pods, artifacts, reports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import kr8s.asyncio
from ruamel.yaml import YAML

from e2e.agent import AgentProcess
from e2e.controlplane import ControlPlane
from e2e.falco import FalcoBinaries
from e2e.kube import call, request
from e2e.wait import wait_for

Json = dict[str, Any]
ARTIFACT_API = "/apis/artifact.falcosecurity.dev/v1alpha1"
MERGE = "application/merge-patch+json"
SEED_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "examples" / "seed"
PLURALS = {"Rulesfile": "rulesfiles", "Config": "configs", "Plugin": "plugins"}


def seed(name: str) -> Json:
    document: Json = YAML(typ="safe").load((SEED_DIR / name).read_text())
    document["metadata"].pop("namespace", None)
    return document


def container_plugin(binaries: FalcoBinaries) -> Json:
    """Seed 06's container Plugin with the library built here instead of its registry: rules that use container
    fields (seed 05, FalcoRules scoped by k8s.ns.name) are refused without it, as Falco would refuse them."""
    plugin = seed("06-plugin-container.yaml")
    del plugin["spec"]["ociArtifact"]
    plugin["spec"]["config"]["libraryPath"] = str(binaries.container_plugin)
    return plugin


async def create(api: kr8s.asyncio.Api, namespace: str, obj: Json) -> Json:
    path = f"{ARTIFACT_API}/namespaces/{namespace}/{PLURALS[obj['kind']]}"
    result: Json = await call(api, "POST", path, body=obj)
    return result


async def patch(api: kr8s.asyncio.Api, namespace: str, kind: str, name: str, body: Json) -> None:
    path = f"{ARTIFACT_API}/namespaces/{namespace}/{PLURALS[kind]}/{name}"
    await call(api, "PATCH", path, body=body, content_type=MERGE)


async def delete(api: kr8s.asyncio.Api, namespace: str, kind: str, name: str) -> None:
    await call(api, "DELETE", f"{ARTIFACT_API}/namespaces/{namespace}/{PLURALS[kind]}/{name}")


@asynccontextmanager
async def running_agents(
    plane: ControlPlane, workdir: Path, namespace: str, falco: str, pods: dict[str, Json], nodes: list[str],
    falco_urls: dict[str, str] | None = None, extra_args: tuple[str, ...] = (),
) -> AsyncIterator[dict[str, AgentProcess]]:  # fmt: skip
    """Agents for the pods on ``nodes``; ``falco_urls``: the Falco web server each node's agent asks."""
    agents = {}
    for node in nodes:
        metadata = pods[node]["metadata"]
        agents[node] = AgentProcess(plane, workdir / node, namespace, falco, metadata["name"], metadata["uid"], node,
                                    falco_url=(falco_urls or {}).get(node, ""), extra_args=extra_args)  # fmt: skip
    try:
        for agent in agents.values():
            agent.start()
        for agent in agents.values():
            await agent.wait_ready()
        yield agents
    finally:
        for agent in agents.values():
            agent.stop()


async def report(api: kr8s.asyncio.Api, agent: AgentProcess) -> Json:
    status, body = await request(api, "GET", f"{ARTIFACT_API}/namespaces/{agent.namespace}/artifactreports/{agent.pod}")
    return body if status == 200 and isinstance(body, dict) else {}


def entry(report_body: Json, kind: str, name: str) -> Json:
    for item in (report_body.get("status") or {}).get("artifacts") or []:
        if item["kind"] == kind and item["name"] == name:
            return dict(item)
    return {}


async def wait_files(
    agent: AgentProcess, directory: Path, accept: Callable[[dict[str, bytes]], bool], what: str, timeout: float = 10
) -> dict[str, bytes]:
    async def probe() -> dict[str, bytes]:
        return agent.files(directory)

    return await wait_for(probe, accept, timeout=timeout, interval=0.05, what=f"{what} ({agent.pod})")


async def wait_entry(
    api: kr8s.asyncio.Api, agent: AgentProcess, kind: str, name: str, accept: Callable[[Json], bool], what: str
) -> Json:
    async def probe() -> Json:
        return entry(await report(api, agent), kind, name)

    return await wait_for(probe, accept, timeout=15, what=f"{what} in the report of {agent.pod}")


Probe = Callable[[], Awaitable[Any]]
