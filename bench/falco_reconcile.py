"""Benchmark: reconcile throughput and API writes of the Falco controller, and the operator's memory.

Starts a local control plane with 3 simulated nodes and the operator (its own process and ServiceAccount),
creates N Falcos at once, and prints: time until all are Reconciled, until all are Available, writes per
Falco (from the API server's audit log), writes in a 30 s steady state, and the operator's resident memory. The
operator runs with ``.venv-runtime`` (the runtime dependencies only, as in the image; made on first use).

Run: ``.venv/bin/python -m bench.falco_reconcile [--falcos 50]`` (figures depend on the machine; compare
ratios between runs on one machine).
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time
from pathlib import Path

import anyio
import kr8s.asyncio

from bench.runtime import runtime_python
from e2e.agent import rule, rulesfile
from e2e.audit import AuditMark
from e2e.controlplane import start_cluster
from e2e.kube import call, request
from e2e.metrics import Samples, scrape, value
from e2e.operator import USERNAME, RunningOperator, install_crds, run_operator

FALCOS = "/apis/instance.falcosecurity.dev/v1alpha1/namespaces/{ns}/falcos"
RULESFILES = "/apis/artifact.falcosecurity.dev/v1alpha1/namespaces/{ns}/rulesfiles"
FLOW_SCHEMAS = "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas"


LAG = "falco_operator_event_loop_lag_seconds"


def loop_lags(samples: Samples) -> str:
    """The operator's event loop lag over the run: looks, and how many came later than 0.1, 1 and 5 s."""
    looks = value(samples, f"{LAG}_count")
    late = {bound: looks - value(samples, f"{LAG}_bucket", le=bound) for bound in ("0.1", "1.0", "5.0")}
    return (
        f"{looks:.0f} looks every 0.5 s, {late['0.1']:.0f} later than 0.1 s, {late['1.0']:.0f} later than 1 s, "
        f"{late['5.0']:.0f} later than 5 s; {value(samples, f'{LAG}_sum') / max(looks, 1) * 1000:.0f} ms mean"
    )


def lease_flow_schema(username: str) -> dict[str, object]:
    """The operator's Lease requests in the API server's ``leader-election`` priority level (as the control plane's
    own controllers have theirs), not in ``workload-low`` behind its other requests and every other service
    account's: on a busy machine, 1,000 artifacts and 500 Falcos made it miss its 10 s renew deadline there."""
    _, _, namespace, name = username.split(":")
    return {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
        "metadata": {"name": "falco-operator-leases"},
        "spec": {
            "priorityLevelConfiguration": {"name": "leader-election"}, "matchingPrecedence": 200,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [{
                "subjects": [{"kind": "ServiceAccount", "serviceAccount": {"name": name, "namespace": namespace}}],
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                   "namespaces": ["*"]}],
            }],
        },
    }  # fmt: skip


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def count_with(api: kr8s.asyncio.Api, namespace: str, condition: str) -> int:
    status, listing = await request(api, "GET", FALCOS.format(ns=namespace))
    if status != 200:
        return 0
    return sum(
        1 for item in listing["items"]
        if any(c["type"] == condition and c["status"] == "True"
               for c in (item.get("status") or {}).get("conditions") or [])
    )  # fmt: skip


async def wait_all(
    api: kr8s.asyncio.Api, namespace: str, condition: str, total: int, started: float, operator: RunningOperator
) -> float:
    while await count_with(api, namespace, condition) < total:
        if operator.process.poll() is not None:
            raise SystemExit(f"the operator exited before all were {condition}:\n{operator.log_tail()}")
        await anyio.sleep(0.2)
    return time.monotonic() - started


async def create_unrelated(api: kr8s.asyncio.Api, count: int) -> None:
    """``count`` Secrets and ``count`` ConfigMaps that are not the project's (the operator must not cache them)."""
    await call(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": "unrelated"}})
    limit = anyio.Semaphore(64)

    async def one(kind: str, index: int) -> None:
        async with limit:
            body = {"metadata": {"name": f"x{index:05d}"}, "data": {"k": "dmFsdWU=" if kind == "secrets" else "v"}}
            await call(api, "POST", f"/api/v1/namespaces/unrelated/{kind}", body=body)

    async with anyio.create_task_group() as group:
        for index in range(count):
            group.start_soon(one, "secrets", index)
            group.start_soon(one, "configmaps", index)


async def create_artifacts(api: kr8s.asyncio.Api, namespace: str, count: int) -> None:
    """``count`` Rulesfiles with one small inline rule each, in the Falcos' namespace (the operator caches them, and
    every Falco's artifact summary counts them)."""
    limit = anyio.Semaphore(50)

    async def one(index: int) -> None:
        async with limit:
            await call(api, "POST", RULESFILES.format(ns=namespace),
                       body=rulesfile(f"r{index:04d}", rule(f"rule_{index:04d}")))  # fmt: skip

    async with anyio.create_task_group() as group:
        for index in range(count):
            group.start_soon(one, index)


async def main(
    falcos: int, unrelated: int, available: bool, artifacts: int = 0, lease_flow: bool = True,
    operator_args: tuple[str, ...] = (),
) -> None:  # fmt: skip
    with tempfile.TemporaryDirectory() as workdir:
        plane = start_cluster(Path(workdir) / "plane")
        try:
            install_crds(plane)
            if lease_flow:
                admin = await kr8s.asyncio.api(kubeconfig=str(plane.kubeconfig))
                await call(admin, "POST", FLOW_SCHEMAS, body=lease_flow_schema(USERNAME))
                if admin._session is not None:
                    await admin._session.aclose()
            # The operator runs with the runtime dependencies only, as in the image (the development virtualenv's
            # httpx imports its command line's rich, click and pygments: about 5 MiB).
            with run_operator(plane, Path(workdir), "--sync-period=10", *operator_args,
                              python=runtime_python()) as operator:  # fmt: skip
                api = await kr8s.asyncio.api(kubeconfig=str(plane.kubeconfig))
                namespace = "bench"
                await call(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
                await anyio.sleep(3)
                idle_rss = rss_mib(operator.process.pid)
                if artifacts:
                    await create_artifacts(api, namespace, artifacts)
                unrelated_rss = None
                if unrelated:
                    await create_unrelated(api, unrelated)
                    await anyio.sleep(5)
                    unrelated_rss = rss_mib(operator.process.pid)
                requests_before = value(await scrape(operator.metrics_url), "rest_client_requests_total")
                mark = AuditMark.now(plane.state.audit_log)
                started = time.monotonic()
                limit = anyio.Semaphore(50)

                async def create(index: int) -> None:
                    async with limit:
                        body = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco",
                                "metadata": {"name": f"f{index:03d}"}, "spec": {}}  # fmt: skip
                        await call(api, "POST", FALCOS.format(ns=namespace), body=body)

                async with anyio.create_task_group() as group:
                    for index in range(falcos):
                        group.start_soon(create, index)
                reconciled = await wait_all(api, namespace, "Reconciled", falcos, started, operator)
                requests_reconciled = value(await scrape(operator.metrics_url), "rest_client_requests_total")
                available_after = (
                    await wait_all(api, namespace, "Available", falcos, started, operator) if available else None
                )
                await anyio.sleep(5)
                requests = value(await scrape(operator.metrics_url), "rest_client_requests_total") - requests_before
                writes = [
                    w for w in mark.writes_since(user=operator.username) if w["objectRef"].get("resource") != "leases"
                ]
                by_resource = collections.Counter(w["objectRef"].get("resource") for w in writes)
                steady_mark = AuditMark.now(plane.state.audit_log)
                await anyio.sleep(30)
                steady = [w for w in steady_mark.writes_since(user=operator.username)
                          if w["objectRef"].get("resource") != "leases"]  # fmt: skip
                lags = loop_lags(await scrape(operator.metrics_url))
                busy_rss = rss_mib(operator.process.pid)
                peak_rss = rss_mib(operator.process.pid, "VmHWM")
                if api._session is not None:
                    await api._session.aclose()
        finally:
            plane.stop()
    print(f"machine: {os.cpu_count()} cores; Falcos: {falcos}, 3 simulated nodes each; {artifacts} Rulesfiles; "
          f"operator flags {' '.join(operator_args) or '(none extra)'}")  # fmt: skip
    print(f"all Reconciled=True after   {reconciled:6.2f} s  ({falcos / reconciled:5.1f} Falcos/s); "
          f"operator requests until then {requests_reconciled - requests_before:.0f}")  # fmt: skip
    if available_after is not None:
        print(f"all Available=True after    {available_after:6.2f} s")
    print(f"operator API requests       {requests:.0f} ({requests / falcos:.1f} per Falco, Lease renewals included)")
    print(f"operator writes until then  {len(writes)} ({len(writes) / falcos:.1f} per Falco): {dict(by_resource)}")
    if available_after is not None:
        print(f"operator writes in 30 s of steady state (resync every 10 s, lease renewals excluded): {len(steady)}")
    else:
        print("steady state not measured: the simulated pods were still becoming ready (--skip-available)")
    print(f"operator event loop lag     {lags}")
    extra = f", {unrelated_rss:.0f} MiB with {unrelated} unrelated Secrets and ConfigMaps each" if unrelated_rss else ""
    print(
        f"operator resident memory    {idle_rss:.0f} MiB idle{extra}, {busy_rss:.0f} MiB with {falcos} Falcos "
        f"(peak {peak_rss:.0f} MiB); load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--falcos", type=int, default=50)
    parser.add_argument("--unrelated", type=int, default=0, help="Secrets and ConfigMaps (each) not of the project")
    parser.add_argument("--skip-available", action="store_true",
                        help="do not wait for every Falco's pods (the simulated nodes set that pace)")  # fmt: skip
    parser.add_argument("--artifacts", type=int, default=0, help="Rulesfiles in the Falcos' namespace")
    parser.add_argument("--no-lease-flow", action="store_true",
                        help="the operator's Lease renewals left in workload-low (no FlowSchema)")  # fmt: skip
    parser.add_argument("--operator-arg", action="append", default=[],
                        help="an extra operator flag (repeat it), e.g. a longer lease on a busy machine")  # fmt: skip
    arguments = parser.parse_args()
    anyio.run(main, arguments.falcos, arguments.unrelated, not arguments.skip_available, arguments.artifacts,
              not arguments.no_lease_flow, tuple(arguments.operator_arg))  # fmt: skip
