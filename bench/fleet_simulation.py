"""Benchmark: a fleet of N simulated agents — what the API server and etcd see, beyond what real agents fit here.

For each N: a control plane of its own, N Nodes and their Falco pods (the DaemonSet controller makes the pods,
the scheduler binds them; Nodes are created directly, Ready, without heartbeats, and the node lifecycle controller
is off so that nothing writes to them), the real operator process, and K worker processes each running N/K
simulated agents (``bench/simulated_agents.py``: the agent's own informers, selection, debounce and ``Reporter``,
its pass replaced by "every selected artifact Loaded", one report per change; a pod-bound token per agent).
Then, measured from the API server's and etcd's ``/metrics``, the audit log and the operator's ``/proc``:

1. start: every agent listed, watching and reported (requests, memory per simulated agent);
2. steady state without artifacts, S seconds;
3. one Rulesfile for every node created, then changed U times: time to ``Programmed=True`` with N/N loaded,
   requests by verb and resource, writes by whom, etcd's puts and database growth, the operator's CPU;
4. steady state with the artifact, S seconds.

Run: ``.venv/bin/python -m bench.fleet_simulation [--nodes 100,1000,2000] [--updates 5] [--steady 60]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio

from bench.artifacts_at_scale import ARTIFACTS, NAMESPACE, QUIET, cpu_seconds, programmed
from bench.runtime import runtime_python
from e2e.agent import FALCO_API, rule, rulesfile
from e2e.audit import AuditMark, completed_at
from e2e.controlplane import ControlPlane
from e2e.controlplane.processes import popen, terminate
from e2e.fleet import request_counts
from e2e.kube import call, request
from e2e.nodesim import NodeSpec, node_status
from e2e.operator import ROOT, install_crds, run_operator
from e2e.operator import USERNAME as OPERATOR_USER
from e2e.wait import wait_for
from falco_operator.manifests import leader_election_flow_schema

Json = dict[str, Any]
AGENT_USER = f"system:serviceaccount:{NAMESPACE}:falco"
AGENTS_PER_WORKER = 500
PARALLEL = 32
"""Requests in flight while the benchmark builds the fleet (Nodes, tokens)."""
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
WRITES = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}


# -- metrics ---------------------------------------------------------------------------------------------------


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] == name:
            found.append((dict(_LABEL.findall(match["labels"] or "")), float(match["value"])))
    return found


@dataclass
class Snapshot:
    """Counters at one instant: API requests by (verb, resource), etcd, the operator, the workers."""

    at: float
    requests: Counter[tuple[str, str]]
    throttled: int
    watches: int
    etcd_db_bytes: float
    etcd_puts: float
    operator_cpu: float
    operator_rss: int
    workers_rss: int
    audit: AuditMark
    control_plane: dict[str, tuple[float, int]]
    """CPU seconds and resident bytes of the API server and etcd."""

    @classmethod
    def take(cls, plane: ControlPlane, operator_pid: int, workers: list[int]) -> Snapshot:
        api = plane.kubectl("get", "--raw", "/metrics").stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{plane.state.etcd_port}/metrics", timeout=10) as answer:
            etcd = answer.read().decode()
        throttled = sum(int(value) for labels, value in samples(api, "apiserver_request_total")
                        if labels.get("code") == "429")  # fmt: skip
        watches = sum(int(value) for labels, value in samples(api, "apiserver_longrunning_requests")
                      if labels.get("verb") == "WATCH")  # fmt: skip
        puts = sum(value for _, value in samples(etcd, "etcd_mvcc_put_total"))
        size = sum(value for _, value in samples(etcd, "etcd_mvcc_db_total_size_in_bytes"))
        return cls(time.monotonic(), request_counts(api), throttled, watches, size, puts,
                   cpu_seconds(operator_pid), rss(operator_pid), sum(rss(pid) for pid in workers),
                   AuditMark.now(plane.state.audit_log),
                   {name: (cpu_seconds(plane.state.pids[name]), rss(plane.state.pids[name]))
                    for name in ("kube-apiserver", "etcd")})  # fmt: skip


def rss(pid: int) -> int:
    """Resident set of a process in bytes (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


@dataclass
class Phase:
    """What changed between two snapshots."""

    name: str
    seconds: float
    requests: Counter[tuple[str, str]]
    throttled: int
    watches: int
    etcd_growth: float
    etcd_puts: float
    operator_cpu: float
    operator_rss: int
    workers_rss: int
    writes_by: Counter[str]
    rulesfile_writes: Counter[str]
    control_plane: dict[str, tuple[float, int]]
    """CPU seconds spent and resident bytes at the end, of the API server and etcd."""
    extra: Json = field(default_factory=dict)

    @classmethod
    def between(cls, name: str, before: Snapshot, after: Snapshot) -> Phase:
        writes = before.audit.writes_since()
        by: Counter[str] = Counter()
        shared: Counter[str] = Counter()
        for write in writes:
            user = str((write.get("user") or {}).get("username") or "")
            ref = write.get("objectRef") or {}
            resource = ref.get("resource", "") + ("/" + ref["subresource"] if ref.get("subresource") else "")
            who = "agents" if user == AGENT_USER else "operator" if user == OPERATOR_USER else "control plane"
            if who == "operator" and resource == "leases":
                who = "operator (Lease)"
            code = int((write.get("responseStatus") or {}).get("code") or 0)
            refused = f" (refused, {code})" if code >= 400 else ""  # the audit log has APF's 429s too
            by[f"{who}: {write['verb']} {resource}{refused}"] += 1
            if refused:
                continue
            if ref.get("resource") == "rulesfiles" and ref.get("name") == "shared":
                shared["status" if ref.get("subresource") == "status" else "spec"] += 1
        extra: Json = {"load_average_1m": round(os.getloadavg()[0], 1), **write_times(writes)}
        return cls(name, after.at - before.at, after.requests - before.requests, after.throttled - before.throttled,
                   after.watches, after.etcd_db_bytes - before.etcd_db_bytes, after.etcd_puts - before.etcd_puts,
                   after.operator_cpu - before.operator_cpu, after.operator_rss, after.workers_rss, by, shared,
                   {name: (cpu - before.control_plane[name][0], resident)
                    for name, (cpu, resident) in after.control_plane.items()}, extra)  # fmt: skip

    def timeline(self) -> str:
        """When the shared Rulesfile's status was written, and the first and last report applies accepted."""
        at = self.extra.get("status_writes_at_s")
        if not at:
            return ""
        reports = self.extra.get("reports_at_s") or ["-", "-"]
        return (f"    after the user's write: status written at {', '.join(f'{t:.1f}' for t in at)} s; "
                f"reports accepted from {reports[0]} to {reports[1]} s")  # fmt: skip

    def rate(self, count: float) -> float:
        return count / self.seconds if self.seconds else 0.0

    def to_json(self) -> Json:
        return {"name": self.name, "seconds": round(self.seconds, 2),
                "requests": {f"{verb} {resource}": count for (verb, resource), count in sorted(self.requests.items())
                             if count},
                "requests_total": sum(self.requests.values()),
                "writes_total": sum(c for (verb, _), c in self.requests.items() if verb in WRITES),
                "throttled": self.throttled, "watches": self.watches, "etcd_growth_bytes": self.etcd_growth,
                "etcd_puts": self.etcd_puts, "operator_cpu_s": round(self.operator_cpu, 2),
                "operator_rss_mib": round(self.operator_rss / 2**20, 1),
                "workers_rss_mib": round(self.workers_rss / 2**20, 1),
                "control_plane": {name: {"cpu_s": round(cpu, 2), "rss_mib": round(resident / 2**20, 1)}
                                  for name, (cpu, resident) in self.control_plane.items()},
                "writes_by": dict(self.writes_by.most_common()), "rulesfile_writes": dict(self.rulesfile_writes),
                **self.extra}  # fmt: skip

    def describe(self) -> list[str]:
        shown = {key: count for key, count in self.requests.items() if count and key[1] not in ("", "/openapi/v3")}
        reads = sum(c for (verb, _), c in shown.items() if verb not in WRITES)
        writes = sum(c for (verb, _), c in shown.items() if verb in WRITES)
        top = ", ".join(f"{v} {r} {c}" for (v, r), c in sorted(shown.items(), key=lambda item: -item[1])[:14])
        return [
            f"  {self.name}: {self.seconds:.1f} s; requests {reads + writes} ({self.rate(reads + writes):.1f}/s: "
            f"reads {self.rate(reads):.1f}/s, writes {self.rate(writes):.1f}/s); 429s {self.throttled}; "
            f"watches open {self.watches}; load average {self.extra.get('load_average_1m')}",
            f"    by verb and resource: {top}",
            f"    writes (audit) by whom: {dict(self.writes_by.most_common(8))}",
            f"    shared Rulesfile writes: {dict(self.rulesfile_writes) or 0}; etcd puts {self.etcd_puts:.0f}, "
            f"db growth {self.etcd_growth / 2**20:+.2f} MiB; operator CPU {self.operator_cpu:.2f} s, "
            f"RSS {self.operator_rss / 2**20:.0f} MiB; workers RSS {self.workers_rss / 2**20:.0f} MiB"
            + (
                f" ({self.extra['rss_per_agent_kib']:.0f} KiB per agent above the interpreters)"
                if "rss_per_agent_kib" in self.extra
                else ""
            ),
            *([self.timeline()] if self.timeline() else []),
        ]


# -- the fleet -------------------------------------------------------------------------------------------------


OPERATOR_LEASE_FLOW = leader_election_flow_schema()
"""The product's FlowSchema (manifests/manager/flowschema.yaml), which the benchmark applies itself: it starts the
operator as its own process, not from the manifests."""


def start_plane(directory: Path) -> ControlPlane:
    """A control plane whose controller-manager leaves Nodes alone (no heartbeats to judge) and creates the
    DaemonSet's pods at a few hundred per second instead of its default 20 requests per second."""
    plane = ControlPlane.create(directory)
    manager = plane.state.commands["kube-controller-manager"]
    manager[manager.index("--controllers=*")] = "--controllers=*,-node-lifecycle-controller"
    manager += ["--kube-api-qps=300", "--kube-api-burst=600"]
    plane.state.save()
    try:
        plane.start()
    except BaseException:
        plane.stop()
        raise
    return plane


async def in_parallel(jobs: list[Callable[[], Awaitable[None]]], limit: int = PARALLEL) -> None:
    semaphore = anyio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with semaphore:
            await job()

    async with anyio.create_task_group() as group:
        for job in jobs:
            group.start_soon(one, job)


async def create_nodes(api: kr8s.asyncio.Api, names: list[str]) -> None:
    async def create(index: int, name: str) -> None:
        spec = NodeSpec.parse(name)
        await call(
            api,
            "POST",
            "/api/v1/nodes",
            body={"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": spec.labels}},
        )
        # The NodeTaint admission adds not-ready:NoSchedule to a new Node; the lifecycle controller (off) would
        # remove it once the Node is Ready.
        await call(
            api,
            "PATCH",
            f"/api/v1/nodes/{name}",
            body={"spec": {"taints": None}},
            content_type="application/merge-patch+json",
        )
        await call(api, "PATCH", f"/api/v1/nodes/{name}/status", body={"status": node_status(spec, index)},
                   content_type="application/merge-patch+json")  # fmt: skip

    await in_parallel([lambda i=i, n=n: create(i, n) for i, n in enumerate(names)])  # type: ignore[misc]


async def falco_pods(api: kr8s.asyncio.Api, nodes: int) -> list[Json]:
    body = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco", "metadata": {"name": "falco"},
            "spec": {}}  # fmt: skip
    await call(api, "POST", f"{FALCO_API}/namespaces/{NAMESPACE}/falcos", body=body)

    async def scheduled() -> list[Json]:
        _, listing = await request(api, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods",
                                   params={"labelSelector": "app.kubernetes.io/instance=falco"})  # fmt: skip
        return [pod for pod in (listing or {}).get("items", []) if pod["spec"].get("nodeName")]

    pods = await wait_for(scheduled, lambda items: len(items) >= nodes, timeout=900, interval=3,
                          what=f"{nodes} Falco pods scheduled")  # fmt: skip
    role = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/roles/falco"
    await wait_for(lambda: request(api, "GET", role), lambda answer: answer[0] == 200, what="the agents' Role")
    return pods


async def pod_tokens(api: kr8s.asyncio.Api, pods: list[Json]) -> list[Json]:
    """A token bound to each pod, as the kubelet projects one into the pod (the report policy checks it)."""
    agents: list[Json] = []

    async def token(pod: Json) -> None:
        metadata = pod["metadata"]
        spec = {
            "expirationSeconds": 7200,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": metadata["name"], "uid": metadata["uid"]},
        }
        answer = await call(
            api,
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/falco/token",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        agents.append({"pod": metadata["name"], "uid": metadata["uid"], "node": pod["spec"]["nodeName"],
                       "token": answer["status"]["token"]})  # fmt: skip

    await in_parallel([lambda p=pod: token(p) for pod in pods])  # type: ignore[misc]
    return sorted(agents, key=lambda agent: str(agent["node"]))


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    agents: int
    base_rss: int = 0
    """Its resident set before it built any agent (the interpreter and imports)."""

    def line(self) -> str:
        assert self.process.stdout is not None
        text = self.process.stdout.readline().decode().strip()
        if not text:
            raise AssertionError(f"a worker exited ({self.process.poll()}); see its log")
        return text


def start_workers(plane: ControlPlane, agents: list[Json], count: int, workdir: Path) -> list[Worker]:
    workers = []
    for index in range(count):
        share = agents[index::count]
        spec = workdir / f"worker-{index}.json"
        spec.write_text(json.dumps({"server": plane.server, "ca_file": str(plane.ca_file), "namespace": NAMESPACE,
                                    "falco": "falco", "agents": share}))  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with (workdir / f"worker-{index}.log").open("ab") as log:
            process = popen([sys.executable, "-m", "bench.simulated_agents", str(spec)], stdout=subprocess.PIPE,
                            stderr=log, env=env, cwd=ROOT)  # fmt: skip
        workers.append(Worker(process, len(share)))
    for worker in workers:
        worker.base_rss = int(worker.line().split()[1])
    return workers


async def wait_workers_ready(workers: list[Worker]) -> None:
    for worker in workers:
        line = await anyio.to_thread.run_sync(worker.line)
        if not line.startswith("ready"):
            raise AssertionError(f"unexpected worker output: {line}")


# -- the measurements ------------------------------------------------------------------------------------------


async def until_programmed(
    api: kr8s.asyncio.Api, generation: int, nodes: int, started: float, alive: Callable[[], bool]
) -> float:
    async def done() -> bool:
        if not alive():
            raise AssertionError(f"the operator exited before generation {generation} was programmed")
        return await programmed(api, "shared", generation, nodes)

    await wait_for(done, bool, timeout=600, interval=0.1, what=f"shared generation {generation} programmed on {nodes}")
    return time.monotonic() - started


async def one_size(
    nodes: int, updates: int, steady: tuple[float, float], workers: int, protect_lease: bool, workdir: Path,
    operator_args: tuple[str, ...] = (),
) -> Json:  # fmt: skip
    names = [f"n{index:04d}" for index in range(1, nodes + 1)]
    plane = start_plane(workdir / "plane")
    result: Json = {"nodes": nodes, "workers": workers, "cores": os.cpu_count(), "operator_lease_flow": protect_lease,
                    "operator_args": list(operator_args)}  # fmt: skip
    phases: list[Phase] = []
    running: list[Worker] = []
    try:
        install_crds(plane)
        api = await kr8s.asyncio.api(kubeconfig=str(plane.kubeconfig))
        if protect_lease:
            await call(api, "POST", "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas", body=OPERATOR_LEASE_FLOW)
        began = time.monotonic()
        await create_nodes(api, names)
        with run_operator(plane, workdir / "operator", *operator_args, python=runtime_python()) as operator:
            await call(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
            pods = await falco_pods(api, nodes)
            agents = await pod_tokens(api, pods)
            result["fleet_built_s"] = round(time.monotonic() - began, 1)
            print(f"N={nodes}: {nodes} Nodes and Falco pods in {result['fleet_built_s']:.0f} s", flush=True)

            def snapshot() -> Snapshot:
                return Snapshot.take(plane, operator.process.pid, [w.process.pid for w in running])

            before = snapshot()
            running.extend(start_workers(plane, agents, workers, workdir))
            await wait_workers_ready(running)
            after = snapshot()
            start = Phase.between("start", before, after)
            base = sum(worker.base_rss for worker in running)
            start.extra |= {"workers_base_rss_mib": round(base / 2**20, 1),
                           "rss_per_agent_kib": round((after.workers_rss - base) / nodes / 1024, 1)}  # fmt: skip
            phases.append(shown(start))
            phases.append(shown(await quiet(f"steady, no artifacts, {steady[0]:.0f} s", steady[0], snapshot)))

            def alive() -> bool:
                if operator.process.poll() is None:
                    return True
                print(f"the operator exited; its log ends with:\n{operator.log_tail(3000)}", flush=True)
                return False

            phases += await changes(api, nodes, updates, snapshot, alive, result)
            # Long enough, this one also sees the watches end and start again (every 300-600 s).
            phases.append(shown(await quiet(f"steady, 1 artifact, {steady[1]:.0f} s", steady[1], snapshot)))
            result["operator_peak_rss_mib"] = round(peak_rss(operator.process.pid) / 2**20, 1)
            for worker in running:
                terminate(worker.process, grace=30)
        if api._session is not None:
            await api._session.aclose()
    finally:
        for worker in running:
            terminate(worker.process, grace=5)
        plane.stop()
    result["phases"] = [phase.to_json() for phase in phases]
    return result


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


async def quiet(name: str, seconds: float, snapshot: Callable[[], Snapshot]) -> Phase:
    before = snapshot()
    await anyio.sleep(seconds)
    return Phase.between(name, before, snapshot())


def write_times(writes: list[Json]) -> Json:
    """Seconds from the user's write of the shared Rulesfile (its spec) to each write of its status, and to the
    first and last report apply accepted: how a change's status writes fall among its reports."""
    accepted = [w for w in writes if int((w.get("responseStatus") or {}).get("code") or 0) < 400]
    shared = [w for w in accepted if (w.get("objectRef") or {}).get("resource") == "rulesfiles"
              and (w.get("objectRef") or {}).get("name") == "shared"]  # fmt: skip
    edits = [completed_at(w) for w in shared if (w.get("objectRef") or {}).get("subresource") != "status"]
    if not edits:
        return {}
    start = min(edits)
    statuses = sorted(completed_at(w) - start for w in shared if (w.get("objectRef") or {}).get("subresource"))
    reports = sorted(completed_at(w) - start for w in accepted
                     if (w.get("objectRef") or {}).get("resource") == "artifactreports")  # fmt: skip
    return {"status_writes_at_s": [round(t, 2) for t in statuses],
            "reports_at_s": [round(reports[0], 1), round(reports[-1], 1)] if reports else None}  # fmt: skip


def shown(phase: Phase) -> Phase:
    print("\n".join(phase.describe()), flush=True)
    return phase


async def changes(
    api: kr8s.asyncio.Api, nodes: int, updates: int, snapshot: Callable[[], Snapshot], alive: Callable[[], bool],
    result: Json,
) -> list[Phase]:  # fmt: skip
    """The Rulesfile created, then changed ``updates`` times; each phase ends 3 s after ``Programmed``."""
    phases = []
    times: list[float] = []
    path = ARTIFACTS.format(ns=NAMESPACE, plural="rulesfiles")
    for generation in range(1, updates + 2):
        before = snapshot()
        started = time.monotonic()
        if generation == 1:
            await call(api, "POST", path, body=rulesfile("shared", rule("shared", QUIET)))
        else:
            changed = {"spec": {"inlineRules": rule("shared", f"{QUIET}{generation}")}}
            await call(api, "PATCH", f"{path}/shared", body=changed, content_type="application/merge-patch+json")
        elapsed = await until_programmed(api, generation, nodes, started, alive)
        await anyio.sleep(3)
        phase = Phase.between("create" if generation == 1 else f"change {generation - 1}", before, snapshot())
        phase.extra["programmed_s"] = round(elapsed, 2)
        phase.name += f" (Programmed in {elapsed:.2f} s)"
        phases.append(shown(phase))
        if generation > 1:
            times.append(elapsed)
    result["programmed_create_s"] = phases[0].extra["programmed_s"]
    if times:
        result["programmed_change_s"] = {"p50": round(statistics.median(times), 2), "max": round(max(times), 2),
                                         "all": [round(t, 2) for t in times]}  # fmt: skip
    return phases


@contextmanager
def run_directory(keep: Path | None) -> Iterator[str]:
    """A directory for one run: removed afterwards, unless it is made under ``keep``."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield tempfile.mkdtemp(dir=keep)
        return
    with tempfile.TemporaryDirectory() as workdir:
        yield workdir


async def main(
    sizes: list[int], updates: int, steady: tuple[float, float], workers: int, protect_lease: bool,
    output: Path | None, keep: Path | None, operator_args: tuple[str, ...],
) -> None:  # fmt: skip
    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} "
          f"GiB; {time.strftime('%Y-%m-%d %H:%M %Z')}", flush=True)  # fmt: skip
    results = []
    for nodes in sizes:
        count = workers or max(1, math.ceil(nodes / AGENTS_PER_WORKER))
        with run_directory(keep) as workdir:
            result = await one_size(nodes, updates, steady, count, protect_lease, Path(workdir), operator_args)
        print(f"  Programmed after create {result['programmed_create_s']} s; after a change "
              f"{result.get('programmed_change_s')}; operator peak RSS {result['operator_peak_rss_mib']} MiB",
              flush=True)  # fmt: skip
        results.append(result)
        if output:
            await anyio.Path(output).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="100,1000,2000", help="comma-separated fleet sizes")
    parser.add_argument("--updates", type=int, default=5, help="changes of the Rulesfile after its creation")
    parser.add_argument("--steady", type=float, default=60.0, help="seconds of each steady-state window")
    parser.add_argument("--steady-after", type=float, default=0.0,
                        help="seconds of the last steady-state window, with the artifact (0: --steady)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=0, help=f"worker processes (0: one per {AGENTS_PER_WORKER})")
    parser.add_argument("--no-operator-lease-flow", action="store_true",
                        help="leave the operator's Lease renewals in workload-low, with the reports")  # fmt: skip
    parser.add_argument("--keep", type=Path, default=None, help="keep each run's directory (logs) under this one")
    parser.add_argument("--operator-arg", action="append", default=[],
                        help="an extra argument for the operator (repeatable)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    arguments = parser.parse_args()
    windows = (arguments.steady, arguments.steady_after or arguments.steady)
    anyio.run(main, [int(n) for n in arguments.nodes.split(",")], arguments.updates, windows, arguments.workers,
              not arguments.no_operator_lease_flow, arguments.json, arguments.keep,
              tuple(arguments.operator_arg))  # fmt: skip
