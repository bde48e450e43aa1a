"""The OCI source's admission rules at the real API server (the generated CRDs): what a user who writes a bad
OCI source is told."""

from __future__ import annotations

from typing import Any

import kr8s.asyncio
import pytest

from e2e.kube import request

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
RULESFILES = "/apis/artifact.falcosecurity.dev/v1alpha1/namespaces/{namespace}/rulesfiles"


async def _create_with_refresh(api: kr8s.asyncio.Api, namespace: str, name: str, interval: str) -> tuple[int, Any]:
    body = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile", "metadata": {"name": name},
            "spec": {"ociArtifact": {"reference": "ghcr.io/falcosecurity/rules/falco-rules:4",
                                     "refreshInterval": interval}}}  # fmt: skip
    return await request(api, "POST", RULESFILES.format(namespace=namespace), body=body,
                         params={"fieldValidation": "Strict"})  # fmt: skip


@pytest.mark.parametrize("interval", ["1s", "0s", "1ns", "59s", "59.9s", "500ms"])
async def test_a_refresh_interval_under_a_minute_is_refused_in_words(
    api: kr8s.asyncio.Api, namespace: str, interval: str
) -> None:
    status, body = await _create_with_refresh(api, namespace, "too-often", interval)
    assert status == 422, body
    assert "spec.ociArtifact.refreshInterval" in body["message"]
    assert "refreshInterval must be at least 1m (every node asks the registry this often)" in body["message"]


@pytest.mark.parametrize("interval", ["1m", "60s", "90s", "1h30m", "1.5h", "24h"])
async def test_a_refresh_interval_of_a_minute_or_more_is_accepted(
    api: kr8s.asyncio.Api, namespace: str, interval: str
) -> None:
    status, body = await _create_with_refresh(api, namespace, "often-enough", interval)
    assert status == 201, body
    assert body["spec"]["ociArtifact"]["refreshInterval"] == interval
