"""SIGTERM stops the operator promptly, also while its caches cannot sync (a kubelet kills it after the grace
period otherwise, and a rollout waits that long)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import anyio
import kr8s.asyncio
import pytest

from e2e.controlplane import ControlPlane, write_token_kubeconfig
from e2e.controlplane.cluster import free_port
from e2e.kube import call
from e2e.operator import ROOT, operator_command, operator_env, service_account_token

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]


async def test_sigterm_during_the_first_cache_sync_stops_the_operator_within_seconds(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    # A ServiceAccount with no roles: every list the operator's informers start is refused, so nothing syncs.
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", body={"metadata": {"name": "nobody"}})
    kubeconfig = tmp_path / "nobody.kubeconfig"
    write_token_kubeconfig(kubeconfig, control_plane.server, control_plane.ca_file,
                           service_account_token(control_plane, namespace, "nobody"), namespace)  # fmt: skip
    log_path = tmp_path / "operator.log"
    command = operator_command(kubeconfig, free_port(), free_port(), "--log-format=text")
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=operator_env(), cwd=ROOT)  # noqa: ASYNC220
    try:
        deadline = time.monotonic() + 30
        while "forbidden" not in log_path.read_text(errors="replace").lower():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the informers never tried to list"
            await anyio.sleep(0.1)
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        elapsed = time.monotonic() - stopped_at
        assert elapsed < 5, f"stopped {elapsed:.1f} s after SIGTERM:\n{log_path.read_text()[-2000:]}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
