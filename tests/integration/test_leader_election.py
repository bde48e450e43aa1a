"""Two sample controllers as separate processes, one Lease: one reconciles; crash and clean handovers."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import kr8s.asyncio
import pytest

from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.kube import call, request
from e2e.metrics import scrape, value
from e2e.tcpproxy import SwitchableProxy
from e2e.wait import wait_for

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


class Candidate:
    def __init__(
        self, plane: ControlPlane, namespace: str, identity: str, log_dir: Path, kubeconfig: Path | None = None
    ) -> None:
        self.identity = identity
        self.log_path = log_dir / f"{identity}.log"
        self.metrics_port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.log = self.log_path.open("wb")
        kubeconfig = kubeconfig or plane.kubeconfig
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.sample_copier", "--kubeconfig", str(kubeconfig),
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


async def lease_renewed_at(api: kr8s.asyncio.Api, namespace: str) -> float:
    status, lease = await request(
        api, "GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/sample-copier"
    )
    renew = lease["spec"]["renewTime"] if status == 200 else "1970-01-01T00:00:00.000000Z"
    return datetime.datetime.strptime(renew, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC).timestamp()


async def test_a_renewal_that_hangs_once_is_abandoned_and_retried_before_the_renew_deadline(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """The leader's kept-alive connection stops answering (a stalled request on a loaded machine) while new
    connections pass: the hung attempt is abandoned after 4 s, a second one renews, and the leader keeps leading
    well past the 10 s renew deadline (it exited when one attempt could hang until the deadline)."""
    with SwitchableProxy("127.0.0.1", control_plane.state.apiserver_port) as proxy:
        kubeconfig = proxy.kubeconfig(control_plane.kubeconfig, tmp_path / "proxied.kubeconfig")
        leader = Candidate(control_plane, namespace, "stalled-once", tmp_path, kubeconfig=kubeconfig)
        try:
            await wait_for(lambda: holder(api, namespace), lambda h: h == "stalled-once", what="leads", timeout=30)
            first = await lease_renewed_at(api, namespace)
            await wait_for(lambda: lease_renewed_at(api, namespace), lambda at: at > first, what="a renewal")
            proxy.freeze_open()
            frozen_at = time.time()
            await wait_for(lambda: lease_renewed_at(api, namespace), lambda at: at > frozen_at + 1,
                           what="a renewal after the hung attempt", timeout=15)  # fmt: skip
            await anyio.sleep(max(0.0, frozen_at + 14 - time.time()))  # past the renew deadline from the freeze
            still_running = leader.process.poll() is None
            lease_holder = await holder(api, namespace)
            renewed_at = await lease_renewed_at(api, namespace)
        finally:
            leader.stop(signal.SIGKILL)
    log = leader.log_path.read_text()
    assert "attempt abandoned after 4.0s" in log, log  # the freeze did catch a renewal
    assert still_running, log
    assert "lost the leader lease" not in log, log
    assert lease_holder == "stalled-once"
    assert renewed_at > frozen_at + 6, "renewals stopped after the hung attempt"


@pytest.mark.parametrize("failure", ["refused-then-stalled", "stalled"])
async def test_a_leader_cut_off_from_the_api_server_exits_within_the_renew_deadline(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path, failure: str
) -> None:
    """Fast failures then a request that hangs, or only requests that hang: the leader must still give up 10 s
    (the renew deadline) after its last renewal, before a standby may take over at 15 s, and say so plainly."""
    with SwitchableProxy("127.0.0.1", control_plane.state.apiserver_port) as proxy:
        kubeconfig = proxy.kubeconfig(control_plane.kubeconfig, tmp_path / "proxied.kubeconfig")
        leader = Candidate(control_plane, namespace, "cut-off", tmp_path, kubeconfig=kubeconfig)
        try:
            await wait_for(lambda: holder(api, namespace), lambda h: h == "cut-off", what="leads", timeout=30)
            first = await lease_renewed_at(api, namespace)
            await wait_for(lambda: lease_renewed_at(api, namespace), lambda at: at > first, what="a renewal")
            if failure == "refused-then-stalled":
                proxy.switch("refuse")
                await anyio.sleep(5)  # some renewals fail fast ...
            proxy.switch("stall")  # ... then every attempt hangs
            await wait_for(lambda: _returncode(leader), lambda code: code is not None, what="exit", timeout=30,
                           interval=0.05)  # fmt: skip
            exited = time.time()
            last_renewal = await lease_renewed_at(api, namespace)
        finally:
            code = leader.stop(signal.SIGKILL)
    log = leader.log_path.read_text()
    assert code == 1, log
    assert "lost the leader lease" in log, log
    assert "exiting so that a standby takes over" in log, log
    assert "unhandled errors" not in log, log
    assert "Traceback" not in log, log
    led_for = exited - last_renewal
    assert led_for < 11.5, f"kept leading {led_for:.1f}s after the last renewal (renew deadline 10 s, lease 15 s)"


async def _returncode(candidate: Candidate) -> int | None:
    return candidate.process.poll()
