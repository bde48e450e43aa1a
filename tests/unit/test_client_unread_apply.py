"""``Client.apply_unread``: the server's answer is read but not decoded; a refusal still raises."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import pytest

from falco_operator.kube import ApiError, Client
from falco_operator.kube.http import Timeouts
from falco_operator.resources import ARTIFACTREPORTS


@dataclass
class Answer:
    status_code: int
    text: str
    headers: Mapping[str, str] = field(default_factory=dict)

    async def aread(self) -> bytes:
        return self.text.encode()

    async def aiter_lines(self) -> AsyncIterator[str]:
        yield self.text


@dataclass
class Canned:
    """A transport that answers every request with one canned response, and keeps what was sent."""

    answer: Answer
    host: str = "api:6443"
    sent: list[tuple[str, str, str | None]] = field(default_factory=list)

    @asynccontextmanager
    async def open(
        self, method: str, path: str, *, params: dict[str, str] | None, headers: dict[str, str], content: str | None,
        timeout: float | Timeouts, stream: bool,
    ) -> AsyncIterator[Answer]:  # fmt: skip
        self.sent.append((method, path, content))
        yield self.answer

    async def reauthenticate(self) -> None:
        return None

    async def fork(self) -> Canned:
        return self

    async def close(self) -> None:
        return None


BODY = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "ArtifactReport",
        "metadata": {"name": "agent-x", "namespace": "ns"}, "status": {"artifacts": []}}  # fmt: skip


def test_a_successful_apply_is_sent_and_its_answer_not_decoded() -> None:
    transport = Canned(Answer(200, "not even JSON: the answer is not decoded"))
    client = Client(transport, field_manager="agent")
    assert anyio.run(lambda: client.apply_unread(ARTIFACTREPORTS, BODY, subresource="status")) is None
    ((method, path, content),) = transport.sent
    assert (method, path) == ("PATCH", "/apis/artifact.falcosecurity.dev/v1alpha1/namespaces/ns/artifactreports/"
                                       "agent-x/status")  # fmt: skip
    assert content is not None
    assert '"status":{"artifacts":[]}' in content


def test_a_refused_apply_still_raises_with_the_servers_reason() -> None:
    refusal = '{"kind":"Status","code":404,"reason":"NotFound","message":"artifactreports \\"agent-x\\" not found"}'
    client = Client(Canned(Answer(404, refusal)), field_manager="agent")
    with pytest.raises(ApiError, match="not found"):
        anyio.run(lambda: client.apply_unread(ARTIFACTREPORTS, BODY, subresource="status"))
