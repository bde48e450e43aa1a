"""The Falco status: replica counts from the workload and the Reconciled / Available / Progressing conditions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api import LabelSelector
from ..kube.conditions import with_transition_times

Json = dict[str, Any]


@dataclass(frozen=True)
class ReplicaCounts:
    desired: int
    available: int
    unavailable: int
    updated: int
    up_to_date: bool
    """The workload controller has seen the latest spec."""


def replica_counts(kind: str, workload: Json | None) -> ReplicaCounts | None:
    if workload is None:
        return None
    status = workload.get("status") or {}
    generation = (workload.get("metadata") or {}).get("generation")
    seen = status.get("observedGeneration")
    up_to_date = generation is None or seen == generation
    if kind == "DaemonSet":
        return ReplicaCounts(
            int(status.get("desiredNumberScheduled") or 0), int(status.get("numberAvailable") or 0),
            int(status.get("numberUnavailable") or 0), int(status.get("updatedNumberScheduled") or 0), up_to_date,
        )  # fmt: skip
    desired = int((workload.get("spec") or {}).get("replicas") or 0)
    return ReplicaCounts(
        desired, int(status.get("availableReplicas") or 0), int(status.get("unavailableReplicas") or 0),
        int(status.get("updatedReplicas") or 0), up_to_date,
    )  # fmt: skip


def _condition(kind: str, ok: bool, reason: str, message: str, generation: int) -> Json:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message,
            "observedGeneration": generation}  # fmt: skip


def conditions(counts: ReplicaCounts | None, error: str | None, generation: int, kind: str) -> list[Json]:
    reconciled = (
        _condition("Reconciled", False, "ApplyFailed", error, generation)
        if error
        else _condition("Reconciled", True, "Applied", "every object is applied as the spec says", generation)
    )
    if counts is None:
        available = _condition("Available", False, "WorkloadMissing", f"the {kind} does not exist yet", generation)
        progressing = _condition("Progressing", True, "Creating", f"the {kind} is being created", generation)
        return [reconciled, available, progressing]
    ratio = f"{counts.available}/{counts.desired} pods available"
    if counts.desired == 0:
        available = _condition(
            "Available", False, "NoPods", f"the {kind} wants no pods (no matching node?)", generation
        )
    elif counts.available >= counts.desired and counts.unavailable == 0:
        available = _condition("Available", True, "PodsAvailable", ratio, generation)
    else:
        available = _condition("Available", False, "PodsUnavailable", ratio, generation)
    rolling = not counts.up_to_date or counts.updated < counts.desired or counts.unavailable > 0
    progressing = (
        _condition("Progressing", True, "RollingOut", f"{counts.updated}/{counts.desired} pods updated", generation)
        if rolling
        else _condition("Progressing", False, "UpToDate", "every pod runs the current template", generation)
    )
    return [reconciled, available, progressing]


def _selects(raw: Json, falco_labels: dict[str, str]) -> bool:
    selector = (raw.get("spec") or {}).get("instanceSelector")
    if selector is None:
        return True
    try:
        return LabelSelector.model_validate(selector).matches(falco_labels)
    except ValueError:
        return False


def artifact_summary(falco_labels: dict[str, str], artifacts: list[Json]) -> Json:
    """How many artifacts select this Falco, how many are Programmed (for their current generation), failed."""
    selected = [raw for raw in artifacts if _selects(raw, falco_labels)]
    programmed = failed = 0
    for raw in selected:
        status = raw.get("status") or {}
        generation = (raw.get("metadata") or {}).get("generation")
        current = {c.get("type"): c for c in status.get("conditions") or []
                   if c.get("observedGeneration") == generation}  # fmt: skip
        programmed += (current.get("Programmed") or {}).get("status") == "True"
        failed += bool(
            ((status.get("nodes") or {}).get("failed") or 0) and status.get("observedGeneration") == generation
        )
    return {"selected": len(selected), "programmed": programmed, "failed": failed}


def desired_status(
    *, kind: str, workload: Json | None, version: str, error: str | None, generation: int, old: Json | None, now: str,
    artifacts: Json | None = None,
) -> Json:  # fmt: skip
    counts = replica_counts(kind, workload)
    status: Json = {"resourceType": kind, "version": version, "observedGeneration": generation}
    if counts is not None:
        status |= {"desiredReplicas": counts.desired, "availableReplicas": counts.available,
                   "unavailableReplicas": counts.unavailable, "updatedReplicas": counts.updated}  # fmt: skip
    status["conditions"] = with_transition_times(
        conditions(counts, error, generation, kind), (old or {}).get("conditions"), now
    )
    if artifacts is not None:
        status["artifacts"] = artifacts
    return status


def transitions(old: Json | None, new: Json) -> list[tuple[str, str, str, str]]:
    """(type, status, reason, message) of every condition whose status changed (or appeared)."""
    before = {c.get("type"): c.get("status") for c in (old or {}).get("conditions") or []}
    return [
        (c["type"], c["status"], c["reason"], c["message"])
        for c in new["conditions"]
        if before.get(c["type"]) != c["status"]
    ]
