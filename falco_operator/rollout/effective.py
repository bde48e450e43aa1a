"""Which generation of an artifact a node delivers during a staged rollout: the rule the agents follow and the
operator's status counts by. Pure, on the raw artifact object (as the API serves it)."""

from __future__ import annotations

import hashlib
from typing import Any

MAX_NAME = 253
HASH_CHARS = 10
LIVE_PHASES = ("Progressing", "Paused")


def delivers_live(artifact_raw: dict[str, Any], node: str) -> bool:
    """True: ``node`` delivers the artifact as it is in the API (its live spec); False: the stable generation kept
    in the snapshot ConfigMap named by ``status.rollout.snapshot``.

    Without ``spec.rollout`` or without ``status.rollout`` every node delivers the live spec. With both, a node
    delivers it only when the live generation is the stable one, or is the candidate of a running (or paused)
    rollout whose current nodes include ``node``. A generation the operator has not taken up yet is therefore
    never delivered before the operator puts the node in a step.
    """
    spec = artifact_raw.get("spec") or {}
    rollout = (artifact_raw.get("status") or {}).get("rollout")
    if not spec.get("rollout") or not isinstance(rollout, dict):
        return True
    generation = (artifact_raw.get("metadata") or {}).get("generation")
    phase = rollout.get("phase")
    if phase == "Succeeded":
        return bool(rollout.get("stableGeneration") == generation)
    if phase in LIVE_PHASES:
        return bool(rollout.get("candidateGeneration") == generation and node in (rollout.get("nodes") or []))
    return False


def snapshot_name(kind: str, name: str) -> str:
    """The name of the ConfigMap that keeps an artifact's stable generation: ``<name>-<kind lower>-stable``; a
    name longer than a ConfigMap name may be is cut and ends in ``-`` and 10 hex digits of its full form's
    SHA-256 (so two long names that share a beginning still differ)."""
    full = f"{name}-{kind.lower()}-stable"
    if len(full) <= MAX_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:HASH_CHARS]
    return f"{full[: MAX_NAME - HASH_CHARS - 1].rstrip('-.')}-{digest}"
