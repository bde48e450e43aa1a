"""Two sample controllers as separate processes, one Lease: one reconciles; crash and clean handovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import kr8s.asyncio
import pytest

from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.kube import call, request
from e2e.metrics import scrape, value
from e2e.wait import wait_for

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


class Candidate:
    def __init__(self, plane: ControlPlane, namespace: str, identity: str, log_dir: Path) -> None:
        self.identity = identity
        self.metrics_port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.log = (log_dir / f"{identity}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.sample_copier", "--kubeconfig", str(plane.kubeconfig),
             "--namespace", namespace, "--identity", identity,
             "--metrics-address", f"127.0.0.1:{self.metrics_port}", "--probe-address", f"127.0.0.1:{free_port()}"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip

    async def reconciles(self) -> float:
        samples = await scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")
        return value(samples, "controller_runtime_reconcile_total")

    async def role(self) -> str:
        """``down`` until its metrics endpoint answers, then ``standby`` or ``leader``."""
        try:
            samples = await scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")
        except httpx.HTTPError:
            return "down"
        return "leader" if value(samples, "leader_election_master_status", name="sample-copier") == 1 else "standby"

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        self.log.close()
        return code


@pytest.fixture
def candidates(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[dict[str, Candidate]]:
    started: dict[str, Candidate] = {}

    def start(identity: str) -> Candidate:
        started[identity] = Candidate(control_plane, namespace, identity, tmp_path)
        return started[identity]

    yield {"start": start}  # type: ignore[dict-item]
    for candidate in started.values():
        candidate.stop(signal.SIGKILL)


async def holder(api: kr8s.asyncio.Api, namespace: str) -> str:
    status, lease = await request(
        api, "GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/sample-copier"
    )
    return str(lease["spec"].get("holderIdentity") or "") if status == 200 else ""


async def copied_by(api: kr8s.asyncio.Api, namespace: str, name: str) -> str:
    status, secret = await request(api, "GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    return str(secret["metadata"]["annotations"]["copied-by"]) if status == 200 else ""


async def leader_and_standby(
    api: kr8s.asyncio.Api, namespace: str, candidates: dict[str, Candidate], leader: str, standby: str
) -> tuple[Candidate, Candidate]:
    """Start ``leader``, wait until it holds the Lease, then start ``standby`` and wait until it is up."""
    start = candidates["start"]
    first = start(leader)  # type: ignore[operator]
    await wait_for(lambda: holder(api, namespace), lambda h: h == leader, what=f"{leader} leads", timeout=30)
    second = start(standby)  # type: ignore[operator]
    await wait_for(second.role, lambda role: role == "standby", what=f"{standby} up, not leading", timeout=30)
    return first, second


async def test_one_leader_reconciles_and_a_killed_leader_is_replaced_within_20s(
    api: kr8s.asyncio.Api, namespace: str, candidates: dict[str, Candidate]
) -> None:
    first, second = await leader_and_standby(api, namespace, candidates, "first", "second")

    configmaps = f"/api/v1/namespaces/{namespace}/configmaps"
    await call(api, "POST", configmaps, body={"metadata": {"name": "one", "labels": {"copy": "yes"}}, "data": {}})
    await wait_for(lambda: copied_by(api, namespace, "one"), lambda who: who == "first", what="copied by first")
    assert await first.reconciles() >= 1
    assert await second.reconciles() == 0

    first.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    await wait_for(lambda: holder(api, namespace), lambda h: h == "second", what="second takes over", timeout=25)
    takeover = time.monotonic() - killed_at
    assert takeover < 20, f"takeover took {takeover:.1f}s"
    await call(api, "POST", configmaps, body={"metadata": {"name": "two", "labels": {"copy": "yes"}}, "data": {}})
    await wait_for(lambda: copied_by(api, namespace, "two"), lambda who: who == "second", what="copied by second")
    # The new leader reconciles everything it finds, including what its predecessor copied.
    await wait_for(lambda: copied_by(api, namespace, "one"), lambda who: who == "second", what="one re-owned")


async def test_a_clean_stop_releases_the_lease_at_once(
    api: kr8s.asyncio.Api, namespace: str, candidates: dict[str, Candidate]
) -> None:
    leader, standby = await leader_and_standby(api, namespace, candidates, "leader", "standby")
    stopped_at = time.monotonic()
    assert leader.stop(signal.SIGTERM) == 0
    await wait_for(lambda: holder(api, namespace), lambda h: h == "standby", what="standby takes over", timeout=15)
    handover = time.monotonic() - stopped_at
    # The lease is 15 s; a released lease is taken at the standby's next retry (2 s).
    assert handover < 5, f"handover took {handover:.1f}s"
    await wait_for(standby.role, lambda role: role == "leader", what="standby reports leading", timeout=10)
