"""``--namespace``: an operator limited to some namespaces leaves every other namespace alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import kr8s.asyncio
import pytest

from e2e.controlplane import ControlPlane
from e2e.kube import call, request
from e2e.operator import run_operator
from e2e.wait import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
FALCOS = "/apis/instance.falcosecurity.dev/v1alpha1/namespaces/{}/falcos"


@pytest.fixture
async def other_namespace(api: kr8s.asyncio.Api, namespace: str) -> AsyncIterator[str]:
    name = f"{namespace[:50]}-other"
    await call(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    yield name
    await request(api, "DELETE", f"/api/v1/namespaces/{name}")


async def test_an_operator_limited_to_one_namespace_reconciles_only_there(
    api: kr8s.asyncio.Api, namespace: str, other_namespace: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    with run_operator(control_plane, tmp_path, f"--namespace={namespace}", "--leader-election-id=scoped-operator"):
        for target in (namespace, other_namespace):
            body = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco",
                    "metadata": {"name": "scoped"}, "spec": {}}  # fmt: skip
            await call(api, "POST", FALCOS.format(target), body=body)

        async def status_in(target: str) -> dict[str, object]:
            found = await call(api, "GET", f"{FALCOS.format(target)}/scoped")
            return dict(found.get("status") or {})

        await wait_for(lambda: status_in(namespace), lambda s: s.get("resourceType") == "DaemonSet",
                       what="watched namespace reconciled", timeout=30)  # fmt: skip
        await anyio.sleep(3)
        assert await status_in(other_namespace) == {}
        assert (await request(api, "GET", f"/apis/apps/v1/namespaces/{other_namespace}/daemonsets/scoped"))[0] == 404
        assert (await request(api, "GET", f"/apis/apps/v1/namespaces/{namespace}/daemonsets/scoped"))[0] == 200
        other = await call(api, "GET", f"{FALCOS.format(other_namespace)}/scoped")
        assert not other["metadata"].get("finalizers"), "the operator touched a namespace it does not watch"
        # Deleted while the operator runs, so its finalizer is handled and nothing is left behind.
        await call(api, "DELETE", f"{FALCOS.format(namespace)}/scoped")
        await wait_for(lambda: request(api, "GET", f"{FALCOS.format(namespace)}/scoped"), lambda r: r[0] == 404,
                       what="watched Falco deleted", timeout=30)  # fmt: skip
