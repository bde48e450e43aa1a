"""pytest fixtures: one control plane per test session, a namespace per test, a kr8s client."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import kr8s.asyncio
import pytest

from .controlplane import ControlPlane, start_cluster
from .kube import call, request
from .wait import wait_for

REUSE_ENV = "E2E_CONTROLPLANE_DIR"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The session's control plane with three simulated nodes.

    With ``E2E_CONTROLPLANE_DIR`` set to the directory of a running ``make controlplane``, tests reuse it.
    """
    reuse = os.environ.get(REUSE_ENV)
    if reuse:
        yield ControlPlane.attach(Path(reuse))
        return
    plane = start_cluster(tmp_path_factory.mktemp("controlplane"))
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
async def api(control_plane: ControlPlane) -> AsyncIterator[kr8s.asyncio.Api]:
    client = await kr8s.asyncio.api(kubeconfig=str(control_plane.kubeconfig), namespace="default")
    yield client
    if client._session is not None:
        await client._session.aclose()


@pytest.fixture
async def namespace(api: kr8s.asyncio.Api, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh namespace for one test (with its default ServiceAccount), deleted afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{secrets.token_hex(3)}"
    await call(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    await wait_for(
        lambda: _status_of(api, f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        lambda status: status == 200,
        what=f"default ServiceAccount in {name}",
    )
    yield name
    await request_delete(api, f"/api/v1/namespaces/{name}")


async def _status_of(api: kr8s.asyncio.Api, path: str) -> int:
    status, _ = await request(api, "GET", path)
    return status


async def request_delete(api: kr8s.asyncio.Api, path: str) -> None:
    status, body = await request(api, "DELETE", path)
    if status not in (200, 202, 404):
        raise AssertionError(f"DELETE {path} -> {status}: {body}")


def kubectl(plane: ControlPlane, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the control plane's own kubectl with its admin kubeconfig."""
    command = [str(plane.binaries.path("kubectl")), f"--kubeconfig={plane.kubeconfig}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> Path:
    """The project's CRDs, installed as users install them (client-side ``kubectl apply``) and Established."""
    directory = PROJECT_ROOT / "manifests" / "crd"
    kubectl(control_plane, "apply", "-f", str(directory))
    kubectl(control_plane, "wait", "--for=condition=Established", "--timeout=60s", "-f", str(directory))
    # Established comes a moment before every API server handler serves the new resources.
    deadline = time.monotonic() + 30
    while (served := kubectl(control_plane, "get", "falcosecurity", "-A", check=False)).returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"CRDs not served: {served.stderr}")
        time.sleep(0.2)
    return directory
