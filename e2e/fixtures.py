"""pytest fixtures: one control plane per test session, a namespace per test, a kr8s client."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import kr8s.asyncio
import pytest

from .controlplane import ControlPlane, start_cluster
from .falco import FalcoBinaries, find_falco
from .kube import call, request
from .operator import install_crds
from .registry import Registry, start_registry
from .wait import wait_for

REUSE_ENV = "E2E_CONTROLPLANE_DIR"


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


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> Path:
    """The project's CRDs, installed as users install them (client-side ``kubectl apply``) and served."""
    return install_crds(control_plane)


@pytest.fixture(scope="session")
def falco_binaries() -> FalcoBinaries:
    """The real Falco of the harness (``e2e/falco.py``: FALCO_BIN, ../shared/falco, or a verified download)."""
    return find_falco()


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The session's OCI registry: TLS from a test CA and htpasswd authentication, on loopback."""
    registry = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield registry
    finally:
        registry.stop()
