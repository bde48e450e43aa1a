"""The operator reaches the API server without kr8s whenever its credentials allow, and through kr8s otherwise."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from falco_operator.cli import connect
from falco_operator.kube import RuntimeMetrics
from falco_operator.kube.transport import DirectTransport

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: "https://127.0.0.1:9", insecure-skip-tls-verify: true}}
contexts:
- name: c
  context: {{cluster: c, user: u}}
current-context: c
users:
- name: u
  user: {user}
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_token_kubeconfig_goes_direct(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG.format(user='{token: "abc"}'))
    client = await connect(str(path), RuntimeMetrics())
    try:
        assert isinstance(client._transport, DirectTransport)
    finally:
        await client.close()


@pytest.mark.anyio
async def test_exec_credentials_go_through_kr8s(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    credential = '{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": {"token": "t"}}'
    plugin = f"{{apiVersion: client.authentication.k8s.io/v1, command: echo, args: ['{credential}']}}"
    path.write_text(KUBECONFIG.format(user=f"{{exec: {plugin}}}"))
    # kr8s runs the plugin and asks the (absent) API server at once: reaching the server is kr8s's attempt
    # (direct refuses exec credentials with a ValueError before any connection).
    with pytest.raises(httpx.ConnectError):
        await connect(str(path), RuntimeMetrics())
