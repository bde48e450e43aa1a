"""The direct (kr8s-free) transport against the real API server: client certificates, tokens, in-cluster files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import pytest

from e2e.controlplane import ControlPlane
from e2e.operator import service_account_token
from falco_operator.kube import Client, Unauthorized
from falco_operator.kube.resources import NAMESPACES, SERVICE_ACCOUNTS
from falco_operator.kube.transport import Credentials, DirectTransport

pytestmark = pytest.mark.anyio


async def test_a_client_certificate_kubeconfig_works_without_kr8s(control_plane: ControlPlane) -> None:
    client = await Client.connect(kubeconfig=str(control_plane.kubeconfig), field_manager="test", direct=True)
    try:
        names = {item["metadata"]["name"] for item in (await client.list(NAMESPACES))[0]}
        assert {"default", "kube-system"} <= names
    finally:
        await client.close()


def service_account_directory(parent: Path, ca_file: Path, token: str) -> Path:
    """What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
    account = parent / "serviceaccount"
    account.mkdir()
    shutil.copy(ca_file, account / "ca.crt")
    write_token(account, token)
    return account


def in_cluster_client(
    control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str
) -> tuple[Path, Client]:
    """A direct client with in-cluster credentials (the kubelet's files and environment) holding ``token``."""
    account = service_account_directory(tmp_path, control_plane.ca_file, token)
    host, port = control_plane.server.removeprefix("https://").rsplit(":", 1)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return account, Client(DirectTransport(Credentials.in_cluster(account)), field_manager="test")


def write_token(account: Path, token: str) -> None:
    (account / "token").write_text(token)


async def test_an_in_cluster_token_file_is_read_again_after_a_401(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account, client = in_cluster_client(control_plane, tmp_path, monkeypatch, "not-a-token")
    try:
        with pytest.raises(Unauthorized):
            await client.get(SERVICE_ACCOUNTS, "default", namespace)
        # The kubelet rotates the projected token in place; the next 401 makes the client read it again.
        write_token(account, service_account_token(control_plane, namespace, "default"))
        with pytest.raises(Exception, match="forbidden") as denied:
            await client.get(SERVICE_ACCOUNTS, "default", namespace)
        assert getattr(denied.value, "status", None) == 403, "authenticated now, and RBAC says no"
    finally:
        await client.close()


def test_kubeconfigs_that_need_kr8s_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    config = {"clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
              "users": [{"name": "u", "user": {"exec": {"command": "aws"}}}],
              "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
              "current-context": "x"}  # fmt: skip
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="exec and auth-provider credentials need the kr8s transport"):
        Credentials.from_kubeconfig(str(path))


async def test_parallel_401s_refresh_the_credentials_once_and_every_request_completes(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty workers meet the same expired token at once: one refresh, no request fails on a closed session."""
    account, client = in_cluster_client(control_plane, tmp_path, monkeypatch, "not-a-token")
    # The token the client loaded is refused; the file already holds a good one (as after a kubelet rotation).
    write_token(account, service_account_token(control_plane, namespace, "default"))
    outcomes: list[int] = []

    async def worker() -> None:
        try:
            await client.get(SERVICE_ACCOUNTS, "default", namespace)
            outcomes.append(200)
        except Exception as error:
            outcomes.append(int(getattr(error, "status", 0)))

    try:
        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(worker)
        assert outcomes == [403] * 20, "all authenticated after the refresh (RBAC then says no), none failed"
        assert client.refreshes == 1
    finally:
        await client.close()
