"""Files keep reaching the disk while the API server refuses an agent's report writes.

A validating webhook that cannot be reached (``failurePolicy: Fail``) on ArtifactReports' status in the test's
namespace: every write of a report's status is answered 500, which the agent's report writer retries. The agent
hands each pass's status to its writer and goes on, so a change made while the writer is being refused still lands
within seconds (a pass used to wait up to a minute for the write); once the server accepts again, the report says
the latest state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio
import pytest

from e2e.agent import AgentProcess, falco_pods, rule, rulesfile
from e2e.controlplane import ControlPlane
from e2e.kube import call, request
from e2e.operator import RunningOperator
from e2e.wait import wait_for
from tests.integration.agent_support import ARTIFACT_API, MERGE, create, entry, report

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds"), pytest.mark.timeout(300)]
WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
Json = dict[str, Any]


@asynccontextmanager
async def reports_refused(api: kr8s.asyncio.Api, namespace: str, probe_report: str) -> AsyncIterator[None]:
    """Every write of an ArtifactReport's status in ``namespace`` answered 500 while inside (``probe_report``: a
    report whose status a no-op patch tells when the API server applies the webhook)."""
    name = f"refuse-reports-{namespace}"[:63]
    webhook = {"name": "refuse.reports.test.invalid", "admissionReviewVersions": ["v1"], "sideEffects": "None",
               "failurePolicy": "Fail", "timeoutSeconds": 1, "clientConfig": {"url": "https://127.0.0.1:9/refuse"},
               "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
               "rules": [{"apiGroups": ["artifact.falcosecurity.dev"], "apiVersions": ["*"],
                          "operations": ["CREATE", "UPDATE"], "resources": ["artifactreports/status"]}]}  # fmt: skip
    await call(api, "POST", WEBHOOKS, body={"metadata": {"name": name}, "webhooks": [webhook]})
    status_path = f"{ARTIFACT_API}/namespaces/{namespace}/artifactreports/{probe_report}/status"

    async def refused() -> bool:
        code, _ = await request(api, "PATCH", status_path, body={"status": {}}, content_type=MERGE)
        return code >= 500

    try:
        await wait_for(refused, bool, what="the webhook refusing report writes", timeout=30)
        yield
    finally:
        await request(api, "DELETE", f"{WEBHOOKS}/{name}")


def refused_writes(agent: AgentProcess) -> float:
    """The agent's requests answered 500, from its own metrics."""
    _, text = agent.get("/metrics")
    return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
               if line.startswith("rest_client_requests_total{") and 'code="500"' in line)  # fmt: skip


def rules_file_of(agent: AgentProcess, name: str) -> bytes | None:
    return next((data for file, data in agent.files(agent.rules_dir).items() if name in file), None)


def installed(name: str, generation: int) -> Callable[[Json], bool]:
    def accept(body: Json) -> bool:
        found = entry(body, "Rulesfile", name)
        return found.get("generation") == generation and found.get("state") == "Installed"

    return accept


async def test_files_keep_reaching_the_disk_while_report_writes_are_refused(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    pods = await falco_pods(api, namespace, "falco")
    metadata = pods["node1"]["metadata"]
    agent = AgentProcess(control_plane, tmp_path / "node1", namespace, "falco", metadata["name"], metadata["uid"],
                         "node1")  # fmt: skip
    await create(api, namespace, rulesfile("first", rule("first")))
    agent.start()
    try:
        await agent.wait_ready()
        await wait_for(partial(report, api, agent), installed("first", 1), what="the first report", timeout=30)
        async with reports_refused(api, namespace, agent.pod):
            await create(api, namespace, rulesfile("second", rule("second")))
            await wait_for(partial(anyio.to_thread.run_sync, refused_writes, agent), lambda count: count > 0,
                           what="the agent's report write refused (500)", timeout=30)  # fmt: skip
            # The writer is now retrying the report that names "second"; a change made meanwhile still lands.
            await create(api, namespace, rulesfile("third", rule("third")))
            third = await wait_for(partial(anyio.to_thread.run_sync, rules_file_of, agent, "third"),
                                   lambda data: data is not None, what="the third Rulesfile on disk while reports "
                                   "are refused", timeout=10, interval=0.1)  # fmt: skip
            assert third is not None
            assert b"third" in third
            assert not installed("third", 1)(await report(api, agent)), "a report was written through the refusal"
        # The server accepts again: the report catches up with the latest state, not the one first refused.
        await wait_for(partial(report, api, agent), installed("third", 1), what="the report after the refusal",
                       timeout=60)  # fmt: skip
    except BaseException:
        print(agent.log_tail(20000))
        print(sorted(agent.files(agent.rules_dir)))
        raise
    finally:
        agent.stop()
