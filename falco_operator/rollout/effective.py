"""Which generation of an artifact a node runs during a staged rollout: the rule the agents deliver by and the
operator's status counts by.

An artifact without ``spec.rollout`` or without ``status.rollout`` is delivered as it is in the API (the live
spec). With both, a node runs the live spec only when the operator has made it the stable generation
(``Succeeded``), or has put that node in the current step of the rollout of exactly this generation; any other
node runs the stable generation, kept in the snapshot ConfigMap ``snapshot_name(kind, name)``. A generation the
operator has not seen yet is therefore never delivered before the operator puts the node in a step.
"""

from __future__ import annotations

import hashlib
from typing import Any

MAX_NAME_LENGTH = 253
NAME_DIGEST_LENGTH = 10
LIVE_STEP_PHASES = frozenset({"Progressing", "Paused"})


def delivers_live(artifact_raw: dict[str, Any], node: str) -> bool:
    """Whether ``node`` runs the artifact as it is in the API (else: its stable generation, from the snapshot)."""
    spec = artifact_raw.get("spec") or {}
    rollout = (artifact_raw.get("status") or {}).get("rollout")
    if not spec.get("rollout") or not isinstance(rollout, dict):
        return True
    generation = (artifact_raw.get("metadata") or {}).get("generation")
    phase = rollout.get("phase")
    if phase == "Succeeded":
        return rollout.get("stableGeneration") == generation
    if phase in LIVE_STEP_PHASES:
        return rollout.get("candidateGeneration") == generation and node in (rollout.get("nodes") or [])
    return False


def snapshot_name(kind: str, name: str) -> str:
    """The snapshot ConfigMap of an artifact: ``<name>-<kind lower>-stable``, cut to a valid name when too long
    (the cut name ends with ``-`` and 10 hex digits of the full name's SHA-256, so it stays unique)."""
    full = f"{name}-{kind.lower()}-stable"
    if len(full) <= MAX_NAME_LENGTH:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:NAME_DIGEST_LENGTH]
    return f"{full[: MAX_NAME_LENGTH - NAME_DIGEST_LENGTH - 1]}-{digest}"
