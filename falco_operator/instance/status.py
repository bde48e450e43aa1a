"""The Falco status: replica counts from the workload and the Reconciled / Available / Progressing conditions."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from ..artifacts.audience import Audience
from ..artifacts.image_defaults import CONTAINER_PLUGIN
from ..kube import EventRecorder
from ..kube.conditions import with_transition_times
from .falcoconfig import IMAGE_RULES_FILE

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


PROGRESS_DEADLINE = 600.0
"""Seconds a rollout may keep pods unavailable before it is a problem (as Deployments' progressDeadlineSeconds)."""
WARNED_REASONS = {"PodsUnavailable", "ProgressDeadlineExceeded"}
"""Available=False reasons worth a Warning Event; a rollout in progress (RollingOut) is not one."""


def rollout_age(old_conditions: list[Json] | None, now: str) -> float:
    """Seconds since Progressing turned True (0 when it is not True)."""
    for condition in old_conditions or []:
        if condition.get("type") == "Progressing" and condition.get("status") == "True":
            try:
                since = _parse_time(str(condition.get("lastTransitionTime") or now))
                return max(0.0, (_parse_time(now) - since).total_seconds())
            except ValueError:
                return 0.0
    return 0.0


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def conditions(
    counts: ReplicaCounts | None, error: str | None, generation: int, kind: str, rollout_seconds: float = 0.0,
    deadline: float = PROGRESS_DEADLINE, held_back: tuple[str, str] | None = None,
) -> list[Json]:  # fmt: skip
    """Reconciled, Available, Progressing; ``held_back`` (reason, message): what keeps an object whose own pods
    are all available from being Available (a dependency it deployed, not ready yet)."""
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
    rolling = not counts.up_to_date or counts.updated < counts.desired or counts.unavailable > 0
    if counts.desired == 0:
        available = _condition(
            "Available", False, "NoPods", f"the {kind} wants no pods (no matching node?)", generation
        )
    elif counts.available >= counts.desired and counts.unavailable == 0:
        available = (
            _condition("Available", False, held_back[0], f"{ratio}; {held_back[1]}", generation)
            if held_back
            else _condition("Available", True, "PodsAvailable", ratio, generation)
        )
    elif rolling and rollout_seconds < deadline:
        # Pods being replaced are unavailable for a moment: that is the rollout, not a problem (yet).
        available = _condition("Available", False, "RollingOut", f"{ratio} while the rollout progresses", generation)
    elif rolling:
        message = f"{ratio}; the rollout has not finished within {deadline:.0f} s"
        available = _condition("Available", False, "ProgressDeadlineExceeded", message, generation)
    else:
        available = _condition("Available", False, "PodsUnavailable", ratio, generation)
    progressing = (
        _condition("Progressing", True, "RollingOut", f"{counts.updated}/{counts.desired} pods updated", generation)
        if rolling
        else _condition("Progressing", False, "UpToDate", "every pod runs the current template", generation)
    )
    return [reconciled, available, progressing]


def _selects(raw: Json, falco: str, falco_labels: dict[str, str]) -> bool:
    audience = Audience.of_object(raw)
    return audience is not None and audience.includes_falco(falco, falco_labels)


IMAGE_DEFAULTS_SUMMARY: Json = {"rules": [IMAGE_RULES_FILE], "plugins": [CONTAINER_PLUGIN]}
"""``status.artifacts.imageDefaults`` of a Falco with ``spec.imageDefaults``: what its spec asks the pods to load
from the image (the operator cannot see what they loaded: each agent's report says that)."""


def artifact_summary(
    falco: str, falco_labels: dict[str, str], artifacts: list[Json], image_defaults: bool = False
) -> Json:
    """How many artifacts select this Falco, how many are Programmed (for their current generation), failed; and
    with ``image_defaults`` what the pods load from the image besides."""
    selected = [raw for raw in artifacts if _selects(raw, falco, falco_labels)]
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
    summary: Json = {"selected": len(selected), "programmed": programmed, "failed": failed}
    if image_defaults:
        summary["imageDefaults"] = {key: list(values) for key, values in IMAGE_DEFAULTS_SUMMARY.items()}
    return summary


ARTIFACT_COUNTS_HOLD = 5.0
"""Seconds a drop of ``status.artifacts.programmed`` alone waits before it is written. An artifact's new generation
takes ``programmed`` down and, once every pod loaded it, back up, within about a second at 100 nodes: held, that dip
is not written at all, and the Falco's pods, whose agents watch their Falco, are not woken twice for every artifact
change. Any other difference (more programmed, a failure, an artifact selected or not, any other field) is written
at once."""


def programmed_dropped(old: Json | None, new: Json) -> bool:
    """Whether ``new`` differs from ``old`` only by fewer programmed artifacts (``ARTIFACT_COUNTS_HOLD``)."""
    if old is None or old.get("artifacts") == new.get("artifacts"):
        return False
    before, after = old.get("artifacts") or {}, new.get("artifacts") or {}
    if {**after, "programmed": before.get("programmed")} != before:
        return False  # selected, failed or imageDefaults moved too
    if int(after.get("programmed") or 0) >= int(before.get("programmed") or 0):
        return False
    return {k: v for k, v in old.items() if k != "artifacts"} == {k: v for k, v in new.items() if k != "artifacts"}


def counts_hold(since: float, now: float) -> float | None:
    """Seconds a drop of ``programmed`` first seen at ``since`` still waits (None: write it now)."""
    wait = since + ARTIFACT_COUNTS_HOLD - now
    return wait if wait > 0 else None


def status_patch(old: Json | None, new: Json) -> Json:
    """The merge patch that turns ``old`` into ``new``: a merge patch keeps the keys it does not mention, at every
    depth, so each key ``new`` no longer has (``artifacts.imageDefaults`` after the field is turned off) is null."""
    patch = dict(new)
    for key, value in (old or {}).items():
        if key not in new:
            patch[key] = None
        elif isinstance(value, dict) and isinstance(new[key], dict):
            patch[key] = status_patch(value, new[key])
    return patch


def desired_status(
    *, kind: str, workload: Json | None, version: str, error: str | None, generation: int, old: Json | None, now: str,
    artifacts: Json | None = None, deadline: float = PROGRESS_DEADLINE, extra_conditions: list[Json] | None = None,
    held_back: tuple[str, str] | None = None, extra_fields: Json | None = None,
) -> Json:  # fmt: skip
    """The status of an object run by one workload (a Falco, a Component); ``extra_fields`` are added as they are
    (a Component's ``service``)."""
    counts = replica_counts(kind, workload)
    status: Json = {"resourceType": kind, "version": version, "observedGeneration": generation}
    if counts is not None:
        status |= {"desiredReplicas": counts.desired, "availableReplicas": counts.available,
                   "unavailableReplicas": counts.unavailable, "updatedReplicas": counts.updated}  # fmt: skip
    old_conditions = (old or {}).get("conditions")
    status["conditions"] = with_transition_times(
        [*conditions(counts, error, generation, kind, rollout_age(old_conditions, now), deadline, held_back),
         *(extra_conditions or [])],
        old_conditions, now,
    )  # fmt: skip
    if artifacts is not None:
        status["artifacts"] = artifacts
    status |= extra_fields or {}
    return status


def unreadable_status(old: Json | None, message: str, generation: int, now: str) -> Json:
    """``old`` with Reconciled False (InvalidSpec): the operator cannot read the object's spec."""
    condition = _condition("Reconciled", False, "InvalidSpec", message, generation)
    kept = [c for c in (old or {}).get("conditions") or [] if c.get("type") != "Reconciled"]
    return {
        **(old or {}),
        "conditions": [*kept, *with_transition_times([condition], (old or {}).get("conditions"), now)],
    }


async def report_transitions(events: EventRecorder, raw: Json, old: Json | None, new: Json) -> None:
    """Events for the condition changes from ``old`` to ``new`` worth telling: no Event for rollouts (they show on
    the workload itself), for a first status unless it is a failure, or for a rollout in progress."""
    before = {c.get("type") for c in (old or {}).get("conditions") or []}
    for kind, state, reason, message in transitions(old, new):
        if kind == "Progressing" or (kind not in before and (state == "True" or kind == "Available")):
            continue
        if kind == "Available" and state == "False" and reason not in WARNED_REASONS:
            continue  # a rollout in progress: pods are replaced, nothing is wrong (yet)
        await events.emit(raw, "Normal" if state == "True" else "Warning", reason, message)


def transitions(old: Json | None, new: Json) -> list[tuple[str, str, str, str]]:
    """(type, status, reason, message) of every condition whose status changed (or appeared), and of Available
    when it turns to a reason worth a warning (a rollout that overran its deadline stays False)."""
    before = {c.get("type"): (c.get("status"), c.get("reason")) for c in (old or {}).get("conditions") or []}
    changed = []
    for c in new["conditions"]:
        status, reason = before.get(c["type"], (None, None))
        turned_bad = c["type"] == "Available" and c["reason"] in WARNED_REASONS and reason not in WARNED_REASONS
        if status != c["status"] or turned_bad:
            changed.append((c["type"], c["status"], c["reason"], c["message"]))
    return changed
