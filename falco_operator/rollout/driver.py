"""The rollout part of an artifact's status reconcile: the next ``status.rollout`` (``plan``), the snapshot written
before a promotion (``snapshot``), and the Events and metric recorded once the status is written."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..api.ocirefs import parse_duration
from ..api.plain import ROLLOUT_ANNOTATION
from ..api.rollout import Rollout, RolloutStatus
from ..kube import Client, EventRecorder, Predicate
from ..kube.promtext import Counter, Registry
from ..kube.resources import CONFIG_MAPS
from .effective import snapshot_name
from .plan import Decision, Inputs, advance, annotation_of, observed
from .snapshot import Snapshot, build

Json = dict[str, Any]
log = logging.getLogger("falco_operator.rollout")
MAX_RECHECK = 60.0
"""The longest a running rollout waits without news before the reconciler looks again (the agents' verdicts
trigger a reconcile themselves; this is the safety net)."""

ROLLOUT_ANNOTATION_CHANGED = Predicate(
    update=lambda old, new: (
        ((old.get("metadata") or {}).get("annotations") or {}).get(ROLLOUT_ANNOTATION)
        != ((new.get("metadata") or {}).get("annotations") or {}).get(ROLLOUT_ANNOTATION)
    )
)
"""Pausing, resuming or aborting a rollout changes no generation: the annotation is watched on its own."""


def rollout_counter(registry: Registry) -> Counter:
    """``falco_operator_rollouts_total{kind,result}``: rollouts ended, by how."""
    return Counter("falco_operator_rollouts_total", "Staged rollouts ended, by result (succeeded, halted, aborted, "
                   "superseded).", ["kind", "result"], registry=registry)  # fmt: skip


@dataclass
class RolloutChange:
    """What one reconcile does about an artifact's rollout."""

    rollout: Json | None
    """The desired ``status.rollout`` (wire form; None: none)."""
    requeue_after: float | None = None
    events: tuple[tuple[str, str, str], ...] = ()
    results: tuple[str, ...] = ()
    raw: Json = field(default_factory=dict)

    async def announce(self, events: EventRecorder, counter: Counter | None) -> None:
        """Record the Events and count the results: call once the status that says so is written."""
        for event_type, reason, note in self.events:
            await events.emit(self.raw, event_type, reason, note)
        for result in self.results:
            if counter is not None:
                counter.labels(kind=str(self.raw.get("kind")), result=result).inc()


def live_rollout(raw: Json) -> RolloutStatus | None:
    value = (raw.get("status") or {}).get("rollout")
    if not isinstance(value, dict):
        return None
    try:
        return RolloutStatus.model_validate(value)
    except ValidationError:
        return None


def spec_rollout(raw: Json) -> Rollout | None:
    value = (raw.get("spec") or {}).get("rollout")
    if not isinstance(value, dict):
        return None
    try:
        return Rollout.model_validate(value)
    except ValidationError:
        return None


def is_programmed(status: Json) -> bool:
    return any(c.get("type") == "Programmed" and c.get("status") == "True" for c in status.get("conditions") or [])


def wire(status: RolloutStatus | None) -> Json | None:
    """The status with every unset field as None, so the merge patch removes what the previous phase had."""
    return status.model_dump(by_alias=True, mode="json") if status is not None else None


class RolloutDriver:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def advance(
        self,
        raw: Json,
        now: str,
        agents: Sequence[tuple[str, str]],
        reports: Mapping[str, Json],
        desired: Json,
        config_map_content: bytes | None,
    ) -> RolloutChange:
        """The rollout part of the desired status of ``raw`` (its other parts in ``desired``), writing the
        snapshot of a generation that becomes the stable one. ``agents``: (pod, node) of the targeted agents."""
        metadata = raw.get("metadata") or {}
        kind, name = str(raw.get("kind")), str(metadata.get("name"))
        rollout, live = spec_rollout(raw), live_rollout(raw)
        inputs = Inputs(
            kind=kind, rollout=rollout, uid=str(metadata.get("uid") or ""),
            generation=int(metadata.get("generation") or 0), live=live,
            # Without a rollout the decision is none at all: the agents' entries are not read.
            targeted=frozenset(node for _, node in agents) if rollout else frozenset(),
            entries=observed(agents, reports, kind, name) if rollout else {},
            annotation=annotation_of(raw), programmed=is_programmed(desired), snapshot=snapshot_name(kind, name),
            now=now,
        )  # fmt: skip
        decision = advance(inputs)
        if decision.promote is not None:
            decision = await self._promote(raw, decision, desired, config_map_content, live)
        again = None
        if decision.running and rollout is not None:
            again = min(MAX_RECHECK, parse_duration(rollout.analysis.duration))
        return RolloutChange(wire(decision.status), again, decision.events, decision.results, raw)

    async def _promote(
        self, raw: Json, decision: Decision, desired: Json, content: bytes | None, live: RolloutStatus | None
    ) -> Decision:
        """Write the snapshot of the generation to promote; when it cannot be built, say why (over the cap: the
        generation is stable without a snapshot) or wait (the OCI digest is not known yet)."""
        assert decision.status is not None
        assert decision.promote is not None
        built = build(raw, decision.promote, decision.status.snapshot or "",
                      digest=desired.get("resolvedDigest"), config_map_content=content)  # fmt: skip
        if isinstance(built, Snapshot):
            await self.client.apply(CONFIG_MAPS, built.body)
            return decision
        if built.too_large:
            status = decision.status.model_copy(update={"snapshot": None, "message": built.reason})
            return Decision(status, events=decision.events, results=decision.results)
        log.info("%s %s: no snapshot yet: %s", raw.get("kind"), (raw.get("metadata") or {}).get("name"), built.reason)
        return Decision(live)
