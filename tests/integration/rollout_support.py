"""Pieces of the staged-rollout acceptance tests (tests/integration/test_rollout.py): simulated nodes each with an
agent and a real Falco (``nodriver``), the operator as a process that can be restarted, a watch that keeps every
version of an artifact the API server sends, and a poller that catches a node running anything but the stable
generation while the rollout status does not let it."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import kr8s.asyncio
from anyio.abc import TaskStatus

from e2e.agent import AgentProcess, wait_falco_pods
from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port, kubeconfig_tls
from e2e.controlplane.processes import popen, terminate
from e2e.falco import FalcoBinaries, RunningFalco, run_falco
from e2e.kube import request
from e2e.metrics import parse, value
from e2e.operator import ROOT, RunningOperator, run_operator
from falco_operator.artifacts.naming import parse_artifact_file_name
from tests.integration.agent_support import ARTIFACT_API, PLURALS, entry, report

Json = dict[str, Any]
MATCHES = "falcosecurity_falco_rules_matches_total"


# -- the operator, restartable ------------------------------------------------------------------------------


@dataclass
class OperatorProcess:
    """The operator as users run it (``e2e.operator.run_operator``), stopped and started again on demand."""

    plane: ControlPlane
    workdir: Path
    running: RunningOperator | None = None
    starts: int = 0
    _stack: ExitStack = field(default_factory=ExitStack)

    def start(self) -> RunningOperator:
        # In the event loop's thread: harness processes die with the thread that started them (PDEATHSIG).
        self.starts += 1
        self.running = self._stack.enter_context(run_operator(self.plane, self.workdir / f"run{self.starts}"))
        return self.running

    def stop(self) -> None:
        self._stack.close()
        self._stack = ExitStack()
        self.running = None

    def restart(self) -> RunningOperator:
        self.stop()
        return self.start()

    @property
    def current(self) -> RunningOperator:
        if self.running is None:
            raise AssertionError("the operator is not running")
        return self.running


# -- nodes: a simulated node, its Falco pod's agent, a real Falco ------------------------------------------


@dataclass
class Rig:
    node: str
    agent: AgentProcess
    falco: RunningFalco


@contextmanager
def node_simulator(plane: ControlPlane, workdir: Path, node: str) -> Iterator[None]:
    """One more simulated node, in a node simulator process of its own, until the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / f"{node}.ready"
    log_path = workdir / f"{node}-nodesim.log"
    command = [sys.executable, "-m", "e2e.nodesim", f"--kubeconfig={plane.kubeconfig}", f"--node={node}",
               f"--ready-file={ready}"]  # fmt: skip
    with log_path.open("ab") as log:
        process = popen(command, stdout=log, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"node simulator for {node} not ready:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield
    finally:
        terminate(process)


@dataclass
class Fleet:
    """Agents and real Falcos on the simulated nodes of one Falco's pods, in one namespace."""

    plane: ControlPlane
    api: kr8s.asyncio.Api
    namespace: str
    falco: str
    workdir: Path
    binaries: FalcoBinaries
    operator: OperatorProcess
    rigs: dict[str, Rig] = field(default_factory=dict)
    stack: ExitStack = field(default_factory=ExitStack)

    @property
    def nodes(self) -> list[str]:
        return sorted(self.rigs)

    async def add(self, nodes: list[str], pods: dict[str, Json]) -> None:
        """A Falco, then an agent (pointed at it), per node; returns once every agent is ready."""
        for node in nodes:
            metadata = pods[node]["metadata"]
            directory = self.workdir / node
            port = free_port()
            agent = AgentProcess(self.plane, directory / "agent", self.namespace, self.falco, metadata["name"],
                                 metadata["uid"], node, falco_url=f"http://127.0.0.1:{port}")  # fmt: skip
            falco = self.stack.enter_context(run_falco(
                directory / "falco", agent.rules_dir.absolute(), agent.config_dir.absolute(),
                agent.plugins_dir.absolute(), binaries=self.binaries, web_port=port))  # fmt: skip
            agent.start()
            self.stack.callback(agent.stop)
            self.rigs[node] = Rig(node, agent, falco)
        for node in nodes:
            await self.rigs[node].agent.wait_ready()

    async def add_node(self, node: str) -> Rig:
        """A node joins: its simulator, the DaemonSet's pod on it, then its agent and Falco."""
        self.stack.enter_context(node_simulator(self.plane, self.workdir / "nodesim", node))
        pods = await wait_falco_pods(self.api, self.namespace, self.falco, len(self.rigs) + 1)
        await self.add([node], pods)
        return self.rigs[node]

    def close(self) -> None:
        self.stack.close()


# -- what a node runs -------------------------------------------------------------------------------------


def artifact_file(files: dict[str, Any], name: str) -> str | None:
    """The one file of artifact ``name`` among ``files`` (names as the agent writes them), if any."""
    found = [file for file in files if (parsed := parse_artifact_file_name(Path(file).name)) and parsed.name == name]
    if len(found) > 1:
        raise AssertionError(f"artifact {name} has several files: {found}")
    return found[0] if found else None


async def loaded_rules_sha(rig: Rig, name: str) -> str | None:
    """The SHA-256 of Rulesfile ``name``'s file as the node's Falco reports it loaded
    (``falcosecurity_falco_sha256_rules_files_info``); "" when it runs none; None while Falco does not answer."""
    try:
        hashes = await rig.falco.rules_hashes()
    except httpx.HTTPError:
        return None
    file = artifact_file(hashes, name)
    return hashes[file] if file else ""


async def installed_config_sha(rig: Rig, name: str) -> str | None:
    """The SHA-256 of Config ``name``'s fragment in the node's config directory (Falco lists only its main
    falco.yaml in its metrics, not fragments); "" when there is none."""
    files = rig.agent.files(rig.agent.config_dir)
    file = artifact_file(files, name)
    return hashlib.sha256(files[file]).hexdigest() if file else ""


async def rule_matches(rig: Rig, rule_name: str) -> float | None:
    """How often ``rule_name`` matched on the node's Falco since its last (re)start; None while it does not answer."""
    try:
        samples = parse(await rig.falco.metrics())
    except httpx.HTTPError:
        return None
    return value(samples, MATCHES, rule_name=rule_name)


# -- the artifact as the API shows it ---------------------------------------------------------------------


def artifact_path(namespace: str, kind: str, name: str) -> str:
    return f"{ARTIFACT_API}/namespaces/{namespace}/{PLURALS[kind]}/{name}"


async def get_artifact(api: kr8s.asyncio.Api, namespace: str, kind: str, name: str) -> Json:
    status, body = await request(api, "GET", artifact_path(namespace, kind, name))
    return body if status == 200 and isinstance(body, dict) else {}


def rollout_of(obj: Json) -> Json:
    return dict((obj.get("status") or {}).get("rollout") or {})


def condition(obj: Json, kind: str) -> Json:
    return dict(next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), {}))


def may_run_candidate(obj: Json, node: str) -> bool:
    """Whether the rollout status lets ``node`` run the artifact's live spec (the contract's delivery rule)."""
    rollout = rollout_of(obj)
    generation = (obj.get("metadata") or {}).get("generation")
    if not rollout:
        return True
    if rollout.get("phase") == "Succeeded":
        return bool(rollout.get("stableGeneration") == generation)
    if rollout.get("phase") in ("Progressing", "Paused"):
        return rollout.get("candidateGeneration") == generation and node in (rollout.get("nodes") or [])
    return False


def first_nodes(uid: str, generation: int, nodes: list[str], count: int) -> list[str]:
    """The contract's node choice: targeted nodes ranked by sha256("<uid>/<generation>/<node>"), the first ``count``."""
    ranked = sorted(nodes, key=lambda node: hashlib.sha256(f"{uid}/{generation}/{node}".encode()).hexdigest())
    return ranked[:count]


def brief(rollout: Json) -> str:
    keys = ("phase", "stableGeneration", "candidateGeneration", "step", "steps", "nodes", "message")
    return json.dumps({key: rollout[key] for key in keys if key in rollout})


@dataclass
class Version:
    at: float
    """``time.monotonic()`` when the watch delivered it."""
    obj: Json

    @property
    def rollout(self) -> Json:
        return rollout_of(self.obj)


@dataclass
class History:
    """Every version of one artifact the API server sends on a watch (a watch event per write that changed it)."""

    versions: list[Version] = field(default_factory=list)

    def status_changes(self, since: float = 0.0) -> list[Version]:
        """The versions after ``since`` whose status differs from the version before (status writes)."""
        changed = []
        for before, after in zip(self.versions, self.versions[1:], strict=False):
            if after.at >= since and (before.obj.get("status") or {}) != (after.obj.get("status") or {}):
                changed.append(after)
        return changed

    def rollouts(self, since: float = 0.0) -> list[Json]:
        """The successive distinct ``status.rollout`` values after ``since`` (start time of a step left out)."""
        seen: list[Json] = []
        for version in self.versions:
            if version.at < since:
                continue
            rollout = {key: item for key, item in version.rollout.items() if key != "stepStartedAt"}
            if not seen or seen[-1] != rollout:
                seen.append(rollout)
        return seen

    def describe(self, since: float = 0.0) -> str:
        return " -> ".join(brief(rollout) for rollout in self.rollouts(since))


@asynccontextmanager
async def watched(plane: ControlPlane, namespace: str, kind: str, name: str) -> AsyncIterator[History]:
    """Watch one artifact for the block; the history fills as the API server sends versions."""
    server, context = kubeconfig_tls(plane.kubeconfig)
    history = History()
    timeout = httpx.Timeout(30.0, read=None)
    async with (
        httpx.AsyncClient(base_url=server, verify=context, timeout=timeout) as http,
        anyio.create_task_group() as group,
    ):
        await group.start(_watch, http, namespace, kind, name, history)
        yield history
        group.cancel_scope.cancel()


async def _watch(
    http: httpx.AsyncClient, namespace: str, kind: str, name: str, history: History, *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:  # fmt: skip
    path = f"{ARTIFACT_API}/namespaces/{namespace}/{PLURALS[kind]}"
    params = {"watch": "true", "fieldSelector": f"metadata.name={name}", "timeoutSeconds": "3600"}
    started = False
    async with http.stream("GET", path, params=params) as response:
        response.raise_for_status()
        if not started:
            task_status.started()
            started = True
        async for line in response.aiter_lines():
            if not line.strip():
                continue
            event = json.loads(line)
            if event.get("type") in ("ADDED", "MODIFIED"):
                history.versions.append(Version(time.monotonic(), event["object"]))


# -- the stable generation stays where it must ------------------------------------------------------------

Probe = Callable[[Rig, str], Awaitable[str | None]]


@dataclass
class StableWatch:
    """Polls what each watched node runs of one artifact and records each sample where a node runs anything but
    ``stable`` while the status (read right after the sample) does not let that node run the candidate: the status
    only moves forward, so such a sample was not allowed when it was taken either. A node added with ``join`` may
    run nothing until its agent's first files land (a node that has just joined has loaded nothing yet); from its
    first load on, it is held to the same rule."""

    fleet: Fleet
    kind: str
    name: str
    stable: str
    probe: Probe
    nodes: list[str]
    samples: dict[str, int] = field(default_factory=dict)
    joining: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            for node in list(self.nodes):
                seen = await self.probe(self.fleet.rigs[node], self.name)
                if seen is None:
                    continue  # Falco restarting: no answer, nothing learnt
                self.samples[node] = self.samples.get(node, 0) + 1
                if node in self.joining:
                    if not seen:
                        continue
                    self.joining.discard(node)
                if seen == self.stable:
                    continue
                obj = await get_artifact(self.fleet.api, self.fleet.namespace, self.kind, self.name)
                if not may_run_candidate(obj, node):
                    self.violations.append(f"{time.monotonic() - self.started:.1f}s: {node} runs "
                                           f"{seen[:12] or 'nothing'} instead of the stable {self.stable[:12]} while "
                                           f"status.rollout = {brief(rollout_of(obj))}")  # fmt: skip
            await anyio.sleep(0.2)

    def join(self, node: str) -> None:
        self.joining.add(node)
        self.nodes.append(node)

    def verdict(self) -> str:
        return f"samples per node {self.samples}; violations: {self.violations[:5]}"


@asynccontextmanager
async def stable_watch(
    fleet: Fleet, kind: str, name: str, stable: str, probe: Probe, nodes: list[str]
) -> AsyncIterator[StableWatch]:
    watch = StableWatch(fleet, kind, name, stable, probe, nodes)
    async with anyio.create_task_group() as group:
        await group.start(watch.run)
        yield watch
        group.cancel_scope.cancel()


# -- Events -----------------------------------------------------------------------------------------------


async def events_about(api: kr8s.asyncio.Api, namespace: str, name: str) -> list[Json]:
    status, body = await request(
        api, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events",
        params={"fieldSelector": f"regarding.name={name}"},
    )  # fmt: skip
    assert status == 200, body
    return list(body.get("items") or [])


# -- what a node's agent reports --------------------------------------------------------------------------


@dataclass
class EntryLog:
    """The successive distinct report entries of one artifact on one node (polled every 0.1 s)."""

    api: kr8s.asyncio.Api
    agent: AgentProcess
    kind: str
    name: str
    entries: list[Json] = field(default_factory=list)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            found = entry(await report(self.api, self.agent), self.kind, self.name)
            if found and (not self.entries or self.entries[-1] != found):
                self.entries.append(found)
            await anyio.sleep(0.1)


@asynccontextmanager
async def entry_log(api: kr8s.asyncio.Api, agent: AgentProcess, kind: str, name: str) -> AsyncIterator[EntryLog]:
    log = EntryLog(api, agent, kind, name)
    async with anyio.create_task_group() as group:
        await group.start(log.run)
        yield log
        group.cancel_scope.cancel()
