"""Benchmark: artifacts at N nodes — write amplification, propagation, steady state.

For each N: a control plane of its own with N simulated nodes, the operator (its own process and ServiceAccount),
one Falco (a DaemonSet pod per node), and N agent processes (``e2e/fleet.py``, shared with the scale test; real
Falco on the first node, stand-ins serving Falco's endpoints on the others). Then:

1. one Rulesfile created, then changed: API requests by verb and resource (``apiserver_request_total``), and the
   writes to the Rulesfile itself (audit log), each until ``Programmed=True`` with N/N loaded plus 3 s;
2. propagation over U updates: PATCH → the new bytes in every agent's directory, and → ``Programmed=True`` for
   that generation, and from the last node's files to ``Programmed`` (p50, p95, p99, max), split by the audit log
   into the agents' part (the last node's files → the last report write), the operator's (→ the status write
   that says ``Programmed``) and this benchmark's polling (→ seen), with the node whose report came last;
3. steady state (largest N only): 20 artifacts and 10 Falco CRs (nine more as one-replica Deployments), S
   seconds without changes: writes (Lease renewals apart) and requests per minute.

Run: ``.venv/bin/python -m bench.artifacts_at_scale [--nodes 10,20,50,100] [--updates 30] [--steady 300]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio

from bench.runtime import runtime_python
from e2e.agent import falco_pods, rule, rulesfile
from e2e.audit import AuditMark, completed_at
from e2e.controlplane import start_cluster
from e2e.falco import find_falco
from e2e.fleet import Fleet, agent_fleet, api_requests
from e2e.kube import call, request
from e2e.operator import USERNAME as OPERATOR_USER
from e2e.operator import install_crds, run_operator
from e2e.wait import wait_for

Json = dict[str, Any]
ARTIFACTS = "/apis/artifact.falcosecurity.dev/v1alpha1/namespaces/{ns}/{plural}"
QUIET = "evt.type = open and proc.name = nope"
NAMESPACE = "bench"
SETTLE = 75.0
"""Seconds from the steady-state objects' creation to the quiet period (more than a status progress interval)."""
FILE = "50-03-shared-inline.yaml"
AGENT_USER = f"system:serviceaccount:{NAMESPACE}:falco"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def spread(values: list[float]) -> str:
    return (f"p50 {statistics.median(values):5.2f}  p95 {percentile(values, 0.95):5.2f}  "
            f"p99 {percentile(values, 0.99):5.2f}  max {max(values):5.2f} s")  # fmt: skip


async def programmed(api: kr8s.asyncio.Api, name: str, generation: int, nodes: int) -> bool:
    _, body = await request(api, "GET", ARTIFACTS.format(ns=NAMESPACE, plural="rulesfiles") + f"/{name}")
    status = (body or {}).get("status") or {}
    ok = any(c["type"] == "Programmed" and c["status"] == "True" for c in status.get("conditions") or [])
    counts = status.get("nodes") or {}
    return bool(ok and status.get("observedGeneration") == generation and counts.get("installed") == nodes
                and counts.get("loaded") == nodes)  # fmt: skip


def rulesfile_writes(mark: AuditMark, name: str) -> tuple[int, int]:
    writes = [w for w in mark.writes_since(namespace=NAMESPACE)
              if w["objectRef"].get("resource") == "rulesfiles" and w["objectRef"].get("name") == name]  # fmt: skip
    status = sum(1 for w in writes if w["objectRef"].get("subresource") == "status")
    return status, len(writes) - status


def interesting(delta: Counter[tuple[str, str]]) -> str:
    # Left out: Lease renewals (reported apart), discovery, and GET rulesfiles (this benchmark's own polling).
    skipped = {("GET", "rulesfiles"), ("GET", "/openapi/v3")}
    shown = {key: count for key, count in delta.items()
             if count and key[1] not in ("leases", "") and key not in skipped}  # fmt: skip
    return ", ".join(f"{verb} {resource} {count}" for (verb, resource), count in sorted(shown.items()))


async def until_programmed(api: kr8s.asyncio.Api, name: str, generation: int, nodes: int) -> None:
    await wait_for(partial(programmed, api, name, generation, nodes), bool, timeout=120, interval=0.05,
                   what=f"{name} generation {generation} programmed on {nodes}")  # fmt: skip


async def one_size(nodes: int, updates: int, steady: float, python: str, workdir: Path) -> list[str]:
    names = [f"n{index:03d}" for index in range(1, nodes + 1)]
    plane = start_cluster(workdir / "plane", nodes=tuple(names))
    out: list[str] = []
    try:
        install_crds(plane)
        with run_operator(plane, workdir / "operator"):
            api = await kr8s.asyncio.api(kubeconfig=str(plane.kubeconfig))
            await call(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
            pods = await falco_pods(api, NAMESPACE, "falco", nodes=nodes)
            started = time.monotonic()
            async with agent_fleet(plane, workdir / "agents", NAMESPACE, "falco", pods, names,
                                   binaries=find_falco(), python=python) as fleet:  # fmt: skip
                out.append(f"N={nodes}: {nodes} agents ready in {time.monotonic() - started:.0f} s")
                out += await write_amplification(api, plane, fleet, nodes)
                out += await propagation(api, fleet, nodes, updates, plane.state.audit_log)
                if steady:
                    out += await steady_state(api, plane, steady)
            if api._session is not None:
                await api._session.aclose()
    finally:
        plane.stop()
    return out


async def write_amplification(api: kr8s.asyncio.Api, plane: Any, fleet: Fleet, nodes: int) -> list[str]:
    out = []
    for phase, generation in (("create", 1), ("change", 2)):
        mark, before = AuditMark.now(plane.state.audit_log), api_requests(plane)
        if phase == "create":
            await call(api, "POST", ARTIFACTS.format(ns=NAMESPACE, plural="rulesfiles"),
                       body=rulesfile("shared", rule("shared", QUIET)))  # fmt: skip
        else:
            await call(api, "PATCH", ARTIFACTS.format(ns=NAMESPACE, plural="rulesfiles") + "/shared",
                       body={"spec": {"inlineRules": rule("shared", QUIET + "2")}},
                       content_type="application/merge-patch+json")  # fmt: skip
        await until_programmed(api, "shared", generation, nodes)
        await anyio.sleep(3)
        status, spec = rulesfile_writes(mark, "shared")
        out.append(f"  {phase}: writes to the Rulesfile {status} status + {spec} spec; "
                   f"requests: {interesting(api_requests(plane) - before)}")  # fmt: skip
    return out


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def agents_cpu(fleet: Fleet) -> float:
    return sum(cpu_seconds(agent.process.pid) for agent in fleet.agents.values() if agent.process)


async def one_update(
    api: kr8s.asyncio.Api, fleet: Fleet, nodes: int, index: int, generation: int, interval: float = 0.01
) -> tuple[float, float]:
    """Edit the shared Rulesfile once: seconds until its new bytes are on every node, and until ``Programmed``
    for ``generation`` with every node loaded."""
    text = rule("shared", f"{QUIET}{index + 10}")
    started = time.monotonic()
    await call(api, "PATCH", ARTIFACTS.format(ns=NAMESPACE, plural="rulesfiles") + "/shared",
               body={"spec": {"inlineRules": text}}, content_type="application/merge-patch+json")  # fmt: skip
    wanted = text.encode()

    async def everywhere() -> bool:
        return all(agent.files(agent.rules_dir).get(FILE) == wanted for agent in fleet.agents.values())

    await wait_for(everywhere, bool, timeout=60, interval=interval, what="new bytes on every node")
    to_files = time.monotonic() - started
    await until_programmed(api, "shared", generation, nodes)
    return to_files, time.monotonic() - started


@dataclass
class Breakdown:
    """Where the time from the last node's files to ``Programmed`` went, per update (seconds)."""

    agents: list[float] = field(default_factory=list)
    """The last node's files → the last report write the API server completed."""
    operator: list[float] = field(default_factory=list)
    """The last report write → the status write that says ``Programmed``."""
    polling: list[float] = field(default_factory=list)
    """That status write → this benchmark saw it."""
    last: Counter[str] = field(default_factory=Counter)
    """Which node's report came last, how often."""

    def add(self, writes: list[Json], files_at: float, seen_at: float, pods: dict[str, str]) -> None:
        reports = [w for w in writes if w["objectRef"].get("resource") == "artifactreports"]
        statuses = [w for w in writes if w["objectRef"].get("resource") == "rulesfiles"
                    and w["objectRef"].get("subresource") == "status"]  # fmt: skip
        if not reports or not statuses:
            return
        last_report = max(reports, key=completed_at)
        written = completed_at(statuses[-1])
        self.agents.append(completed_at(last_report) - files_at)
        self.operator.append(written - completed_at(last_report))
        self.polling.append(seen_at - written)
        name = str(last_report["objectRef"].get("name"))
        self.last[pods.get(name, name)] += 1

    def lines(self, indent: str) -> list[str]:
        if not self.agents:
            return []
        last = ", ".join(f"{node} {count}" for node, count in self.last.most_common(3))
        return [f"{indent}of which the agents (files → last report) {spread(self.agents)}",
                f"{indent}         the operator (last report → status) {spread(self.operator)}",
                f"{indent}         this benchmark's polling {spread(self.polling)}",
                f"{indent}         the last report from: {last}"]  # fmt: skip


async def propagation(api: kr8s.asyncio.Api, fleet: Fleet, nodes: int, updates: int, audit: Path) -> list[str]:
    to_files: list[float] = []
    to_programmed: list[float] = []
    breakdown = Breakdown()
    pods = {agent.pod: node for node, agent in fleet.agents.items()}
    cpu_before = agents_cpu(fleet)
    for index in range(updates):
        mark, began = AuditMark.now(audit), time.time()
        files, done = await one_update(api, fleet, nodes, index, index + 3)
        breakdown.add(mark.writes_since(namespace=NAMESPACE), began + files, began + done, pods)
        to_files.append(files)
        to_programmed.append(done)
    per_update = (agents_cpu(fleet) - cpu_before) / updates / nodes * 1000
    total = per_update * nodes / 1000
    return [f"  propagation over {updates} updates: files on all {nodes} nodes {spread(to_files)}",
            f"  {' ' * (len(str(updates)) + 24)}Programmed=True {spread(to_programmed)}",
            f"  {' ' * (len(str(updates)) + 7)}Programmed after the last node's files "
            f"{spread([done - files for done, files in zip(to_programmed, to_files, strict=True)])}",
            *breakdown.lines(" " * (len(str(updates)) + 9)),
            f"  CPU of one agent per update (event, files, report, Falco polls): {per_update:.0f} ms; "
            f"all {nodes} agents: {total:.2f} CPU-seconds per update on {os.cpu_count()} cores"]  # fmt: skip


async def steady_state(api: kr8s.asyncio.Api, plane: Any, seconds: float) -> list[str]:
    for index in range(19):
        await call(api, "POST", ARTIFACTS.format(ns=NAMESPACE, plural="rulesfiles"),
                   body=rulesfile(f"quiet-{index:02d}", rule(f"quiet_{index:02d}", QUIET)))  # fmt: skip
    # Nine more Falco CRs (ten in all), as one-replica Deployments: a thousand simulated pods would measure the
    # node simulator more than the operator.
    for index in range(9):
        body = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco",
                "metadata": {"name": f"extra-{index}"}, "spec": {"type": "Deployment", "replicas": 1}}  # fmt: skip
        await call(api, "POST", f"/apis/instance.falcosecurity.dev/v1alpha1/namespaces/{NAMESPACE}/falcos", body=body)
    # Every artifact and Falco settles (reports, status, pods) before the quiet period. These artifacts never settle
    # fully (the nine Deployments' pods have no agents), and the status controller writes an unsettled change's
    # progress at most once a minute: the quiet period starts after that minute.
    await anyio.sleep(SETTLE)
    mark, before = AuditMark.now(plane.state.audit_log), api_requests(plane)
    mark_time = datetime.now(UTC)
    await anyio.sleep(seconds)
    writes = mark.writes_since()
    ours = [w for w in writes if _of_the_project(w) and w["objectRef"].get("resource") != "leases"]
    leases = sum(1 for w in writes if _of_the_project(w) and w["objectRef"].get("resource") == "leases")
    simulated = [w for w in writes if not _of_the_project(w)]
    delta = api_requests(plane) - before
    reads = sum(count for (verb, resource), count in delta.items() if verb in ("GET", "LIST", "WATCH")
                and resource != "leases")  # fmt: skip
    described = Counter(f"{w['verb']} {w['objectRef'].get('resource')}" for w in ours).most_common(5)
    # When each write came, in seconds into the quiet period: a status still settling writes early, churn throughout.
    when = sorted(round(_seconds_after(w, mark_time)) for w in ours)
    return [f"  steady state, 20 artifacts, 10 Falco CRs, {seconds:.0f} s: {len(ours)} writes by operator and agents "
            f"({described or 'none'}{f', at {when} s' if when else ''}), {leases} Lease renewals by the operator; "
            f"{len(simulated)} writes by the node simulator and control plane; "
            f"reads (all clients) {reads / (seconds / 60):.0f}/min"]  # fmt: skip


def _seconds_after(write: Json, start: datetime) -> float:
    stamp = str(write.get("stageTimestamp") or write.get("requestReceivedTimestamp") or "")
    try:
        return (datetime.fromisoformat(stamp.replace("Z", "+00:00")) - start).total_seconds()
    except ValueError:
        return -1.0


def _of_the_project(write: Json) -> bool:
    user = str((write.get("user") or {}).get("username") or "")
    return user in (OPERATOR_USER, AGENT_USER)


async def main(sizes: list[int], updates: int, steady: float) -> None:
    python = runtime_python()
    print(f"machine: {os.cpu_count()} cores; agents from .venv-runtime; real Falco on the first node", flush=True)
    for nodes in sizes:
        with tempfile.TemporaryDirectory() as workdir:
            lines = await one_size(nodes, updates, steady if nodes == max(sizes) else 0, python, Path(workdir))
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="10,20,50,100", help="comma-separated node counts")
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--steady", type=float, default=300.0, help="seconds of steady state at the largest N")
    arguments = parser.parse_args()
    anyio.run(main, [int(n) for n in arguments.nodes.split(",")], arguments.updates, arguments.steady)
