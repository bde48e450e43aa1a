"""Hostile FalcoRules and Rulesfiles do not stall the operator: while they exist, the operator, run as users run it
(its own process, leader election on), keeps renewing its Lease, keeps serving other Falcos, and refuses each hostile
object in words.

The objects are the shapes that stalled or exhausted it before (issue 22): an output of ``%`` and 8,000 letters
(4,000 took 225 s to judge on the event loop), a condition of one 8,000-letter word, a Rulesfile whose 40 macros each
use the previous one twice (2^39 walks), and a Rulesfile under 1 KiB of nested YAML aliases that expands to
gigabytes.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from typing import Any

import anyio
import kr8s.asyncio
import pytest

from e2e.agent import rulesfile
from e2e.kube import call, request
from e2e.metrics import scrape, value
from e2e.operator import NAMESPACE as OPERATOR_NAMESPACE
from e2e.operator import RunningOperator
from e2e.wait import wait_for
from tests.integration.agent_support import ARTIFACT_API, create

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
FALCO_API = "/apis/instance.falcosecurity.dev/v1alpha1"
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NAMESPACE}/leases/falco-operator"
RENEW_DEADLINE = 10.0
"""Seconds the operator keeps leading without a renewal (its default); a longer gap means its loop was held."""
READABLE = 1024
"""Characters a validation message may have (they are capped at that)."""
LETTERS = 8000
"""Within the FalcoRule CRD's 8,192-character limit on condition and output."""


def falco(name: str, spec: Json | None = None) -> Json:
    return {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco", "metadata": {"name": name},
            "spec": spec or {}}  # fmt: skip


def falco_rule(name: str, condition: str, output: str) -> Json:
    return {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "FalcoRule", "metadata": {"name": name},
            "spec": {"rule": name, "condition": condition, "output": output, "priority": "notice"}}  # fmt: skip


def macro_chain(levels: int) -> str:
    """``levels`` macros, each using the previous one twice, under a rule; the first names an unknown field, so the
    whole chain must be walked to find it."""
    text = "- macro: m0\n  condition: proc.nam = a\n"
    text += "".join(f"- macro: m{i}\n  condition: m{i - 1} or m{i - 1}\n" for i in range(1, levels))
    return text + (f"- rule: chain\n  desc: d\n  condition: m{levels - 1}\n  output: chain (proc=%proc.name)\n"
                   "  priority: NOTICE\n")  # fmt: skip


def alias_bomb(levels: int) -> str:
    """A rule whose exception values nest YAML aliases: a few hundred bytes that print as 2**levels rows."""
    head = ("- rule: r\n  desc: d\n  condition: evt.type = open\n  output: o\n  priority: WARNING\n"
            "  exceptions:\n  - name: e\n    fields: [proc.name, proc.pname]\n    comps: [=, =]\n"
            "    values:\n    - &a0 [x, x]\n")  # fmt: skip
    return head + "".join(f"    - &a{i} [*a{i - 1}, *a{i - 1}]\n" for i in range(1, levels))


def renewed_at(stamp: str) -> float:
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC).timestamp()


@dataclass
class LeaseRecord:
    """Every (holder, renewTime) the Lease showed, sampled twice a second."""

    samples: list[tuple[str, float]] = field(default_factory=list)
    marked: float = 0.0

    def mark(self) -> None:
        self.marked = time.time()

    async def renewals_since_mark(self) -> int:
        return sum(renewed > self.marked for renewed in self.renewals())

    def holders(self) -> set[str]:
        return {holder for holder, _ in self.samples}

    def renewals(self) -> list[float]:
        return sorted({renewed for _, renewed in self.samples})

    def longest_gap(self) -> float:
        renewals = self.renewals()
        return max((later - earlier for earlier, later in pairwise(renewals)), default=0.0)


async def lease(api: kr8s.asyncio.Api) -> tuple[str, float]:
    status, body = await request(api, "GET", LEASE)
    spec = ((body or {}).get("spec") or {}) if status == 200 else {}
    return str(spec.get("holderIdentity") or ""), renewed_at(spec.get("renewTime") or "1970-01-01T00:00:00.000000Z")


@asynccontextmanager
async def recording_lease(api: kr8s.asyncio.Api) -> AsyncIterator[LeaseRecord]:
    record = LeaseRecord()

    async def sample() -> None:
        while True:
            record.samples.append(await lease(api))
            await anyio.sleep(0.5)

    async with anyio.create_task_group() as group:
        group.start_soon(sample)
        yield record
        group.cancel_scope.cancel()


async def conditions(api: kr8s.asyncio.Api, path: str) -> dict[str, Json]:
    _, body = await request(api, "GET", path)
    return {c["type"]: c for c in ((body or {}).get("status") or {}).get("conditions") or []}


async def refusal(api: kr8s.asyncio.Api, path: str, kind: str, timeout: float) -> Json:
    found = await wait_for(partial(conditions, api, path), lambda c: c.get(kind, {}).get("status") == "False",
                           what=f"{kind}=False on {path}", timeout=timeout)  # fmt: skip
    return found[kind]


@asynccontextmanager
async def other_namespace(api: kr8s.asyncio.Api, name: str) -> AsyncIterator[str]:
    await call(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    try:
        yield name
    finally:
        await request(api, "DELETE", f"/api/v1/namespaces/{name}")


async def test_hostile_falcorules_and_rulesfiles_neither_stall_the_leader_nor_other_falcos(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator
) -> None:
    # This operator leads (a predecessor killed by an earlier test may still be named in the Lease for a while).
    await wait_for(lambda: scrape(operator.metrics_url), lambda s: value(s, "leader_election_master_status") == 1,
                   what="the operator leads", timeout=30)  # fmt: skip
    holder, _ = await lease(api)
    rules = f"{ARTIFACT_API}/namespaces/{namespace}/falcorules"
    rulesfiles = f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles"
    bomb = alias_bomb(26)
    assert len(bomb) < 1024
    async with recording_lease(api) as record, other_namespace(api, f"{namespace}-other") as other:
        # A Falco that loads the FalcoRules of this namespace, so the operator judges them.
        selector = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
        await call(api, "POST", f"{FALCO_API}/namespaces/{namespace}/falcos",
                   body=falco("judge", {"falcoRules": {"namespaceSelector": selector}}))  # fmt: skip
        await call(api, "POST", rules, body=falco_rule("long-output", "proc.name = bash", "%" + "a" * LETTERS))
        await call(api, "POST", rules, body=falco_rule("long-condition", "a" * LETTERS, "shell (proc=%proc.name)"))
        await create(api, namespace, rulesfile("macro-chain", macro_chain(40)))
        await create(api, namespace, rulesfile("alias-bomb", bomb))
        record.mark()
        await wait_for(record.renewals_since_mark, lambda renewals: renewals >= 2,
                       what="two renewals of the Lease after the hostile objects", timeout=15)  # fmt: skip

        # A Falco nobody hostile touches gets its DaemonSet promptly.
        await call(api, "POST", f"{FALCO_API}/namespaces/{other}/falcos", body=falco("bystander"))
        asked = time.monotonic()
        await wait_for(lambda: request(api, "GET", f"/apis/apps/v1/namespaces/{other}/daemonsets/bystander"),
                       lambda answer: answer[0] == 200, what="the bystander's DaemonSet", timeout=20)  # fmt: skip
        print(f"bystander DaemonSet after {time.monotonic() - asked:.1f} s")

        # Each hostile object ends refused, in words, having been judged to the end (not given up on).
        output = await refusal(api, f"{rules}/long-output", "Accepted", timeout=20)
        condition = await refusal(api, f"{rules}/long-condition", "Accepted", timeout=20)
        chain = await refusal(api, f"{rulesfiles}/macro-chain", "Valid", timeout=20)
        aliases = await refusal(api, f"{rulesfiles}/alias-bomb", "Valid", timeout=20)
        alive = operator.process.poll() is None
    # The same leader all along, never a renew deadline without renewing, and the process alive.
    assert alive, operator.log_tail()
    assert record.holders() == {holder}, record.samples
    assert record.longest_gap() < RENEW_DEADLINE, record.renewals()
    assert (output["reason"], condition["reason"]) == ("InvalidRule", "UnknownMacro"), (output, condition)
    assert "is not a known field" in output["message"], output
    assert "define no macro aaa" in condition["message"], condition
    assert "(through macro 'm0'): unknown field proc.nam" in chain["message"], chain
    assert "anchors and aliases" in aliases["message"], aliases
    for refused in (output, condition, chain, aliases):
        assert len(refused["message"]) <= READABLE, refused["message"][:200]
