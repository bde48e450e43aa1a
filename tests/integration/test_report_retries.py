"""The agent's Reporter against a real API server whose priority and fairness refuses a burst of report writes.

A priority level of a few seats that rejects instead of queuing, and a FlowSchema that sends one ServiceAccount's
requests there, make the API server answer 429 (with ``Retry-After``) to a burst of agents writing their reports
at once, as `workload-low` does to a fleet of a thousand agents after a change (docs/performance.md, section 12).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import kr8s.asyncio
import pytest

from artifact_agent.report import Identity, Reporter
from e2e.controlplane import ControlPlane
from e2e.kube import call, request
from e2e.operator import service_account_token
from e2e.wait import wait_for
from falco_operator.kube import ApiError, Client, RuntimeMetrics
from falco_operator.kube.retry import RetryPolicy
from falco_operator.kube.transport import Credentials, DirectTransport
from falco_operator.resources import ARTIFACTREPORTS

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]
AGENTS = 40
ACCOUNT = "burst-agent"
FLOWCONTROL = "/apis/flowcontrol.apiserver.k8s.io/v1"
Json = dict[str, object]


async def grant_reports(api: kr8s.asyncio.Api, namespace: str) -> None:
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", body={"metadata": {"name": ACCOUNT}})
    rules = [{"apiGroups": [ARTIFACTREPORTS.group], "resources": ["artifactreports", "artifactreports/status"],
              "verbs": ["get", "create", "patch"]}]  # fmt: skip
    await call(api, "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
               body={"metadata": {"name": ACCOUNT}, "rules": rules})  # fmt: skip
    binding = {
        "metadata": {"name": ACCOUNT},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
    }
    await call(api, "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings", body=binding)


@pytest.fixture
async def rejecting_level(api: kr8s.asyncio.Api, namespace: str) -> AsyncIterator[str]:
    """A priority level with the fewest seats the API server gives, no borrowing, no queue; the test
    ServiceAccount's requests in it."""
    name = f"reject-{namespace}"[:63]
    level = {"metadata": {"name": name}, "spec": {"type": "Limited", "limited": {
        "nominalConcurrencyShares": 1, "lendablePercent": 0, "borrowingLimitPercent": 0,
        "limitResponse": {"type": "Reject"}}}}  # fmt: skip
    subject = {"kind": "ServiceAccount", "serviceAccount": {"name": ACCOUNT, "namespace": namespace}}
    everything = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"]}
    schema = {"metadata": {"name": name}, "spec": {"priorityLevelConfiguration": {"name": name},
              "matchingPrecedence": 500, "distinguisherMethod": {"type": "ByUser"},
              "rules": [{"subjects": [subject], "resourceRules": [everything]}]}}  # fmt: skip
    await call(api, "POST", f"{FLOWCONTROL}/prioritylevelconfigurations", body=level)
    await call(api, "POST", f"{FLOWCONTROL}/flowschemas", body=schema)
    # The API server's configuration controller marks the schema not dangling once the level is in force.
    await wait_for(lambda: call(api, "GET", f"{FLOWCONTROL}/flowschemas/{name}"), _in_force,
                   what=f"FlowSchema {name} in force", timeout=60)  # fmt: skip
    yield name
    for path in (f"{FLOWCONTROL}/flowschemas/{name}", f"{FLOWCONTROL}/prioritylevelconfigurations/{name}"):
        await request(api, "DELETE", path)


def _in_force(schema: object) -> bool:
    conditions = schema.get("status", {}).get("conditions", []) if isinstance(schema, dict) else []
    return any(c.get("type") == "Dangling" and c.get("status") == "False" for c in conditions)


async def agent_clients(
    api: kr8s.asyncio.Api, plane: ControlPlane, namespace: str, metrics: RuntimeMetrics
) -> list[tuple[Identity, Client]]:
    """One pod per agent, and a client holding a token bound to it (what the report policy requires)."""
    agents = []
    for index in range(AGENTS):
        pod = {"metadata": {"name": f"falco-{index:03d}"}, "spec": {"serviceAccountName": ACCOUNT,
               "containers": [{"name": "agent", "image": "example.invalid/agent:0"}]}}  # fmt: skip
        created = await call(api, "POST", f"/api/v1/namespaces/{namespace}/pods", body=pod)
        name, uid = created["metadata"]["name"], created["metadata"]["uid"]
        token = service_account_token(plane, namespace, ACCOUNT, pod=(name, uid))
        transport = DirectTransport(Credentials(plane.server, ca_file=str(plane.ca_file), token=token))
        client = Client(transport, field_manager="artifact-agent", metrics=metrics)
        agents.append((Identity(name, namespace, uid, None, None), client))
    return agents


def status_of(index: int, revision: int) -> Json:
    return {"artifacts": [{"kind": "Rulesfile", "name": "burst", "generation": revision, "state": "Loaded",
                           "sha256": f"{index:064x}"}]}  # fmt: skip


def refusals(metrics: RuntimeMetrics) -> float:
    return sum(sample.value for family in metrics.registry.collect() if family.name == "rest_client_requests_total"
               for sample in family.samples if sample.labels.get("code") == "429")  # fmt: skip


async def burst(reporters: list[Reporter], revision: int) -> list[BaseException | None]:
    """Every reporter publishes at once; what each raised (None: written)."""
    outcomes: list[BaseException | None] = [None] * len(reporters)

    async def publish(index: int) -> None:
        try:
            await reporters[index].publish(status_of(index, revision))
        except ApiError as error:
            outcomes[index] = error

    async with anyio.create_task_group() as group:
        for index in range(len(reporters)):
            group.start_soon(publish, index)
    return outcomes


async def test_reports_refused_by_priority_and_fairness_are_retried_until_written(
    api: kr8s.asyncio.Api, control_plane: ControlPlane, crds: Path, namespace: str, rejecting_level: str
) -> None:
    await grant_reports(api, namespace)
    metrics = RuntimeMetrics()
    agents = await agent_clients(api, control_plane, namespace, metrics)
    try:
        # Without retries, the burst meets the API server's refusal, with the wait it asks for.
        once = [Reporter(client, identity, RetryPolicy(budget=0.0)) for identity, client in agents]
        refused = [error for error in await burst(once, 1) if error is not None]
        assert refused, "the rejecting priority level let a burst of 40 writes through: the test proves nothing"
        assert all(isinstance(error, ApiError) and error.status == 429 for error in refused), refused
        assert all(isinstance(error, ApiError) and error.retry_after is not None for error in refused)
        refused_before = refusals(metrics)

        # With the Reporter's retries, every report of the next burst is written, though the server refused some.
        reporters = [Reporter(client, identity, RetryPolicy(budget=120.0)) for identity, client in agents]
        assert await burst(reporters, 2) == [None] * AGENTS
        assert refusals(metrics) > refused_before, "no 429 in the second burst: the retries were not exercised"
        for index, (identity, _) in enumerate(agents):
            report = await call(api, "GET", ARTIFACTREPORTS.path(namespace, identity.pod_name))
            assert report["status"] == status_of(index, 2)
    finally:
        for _, client in agents:
            await client.close()
