"""Cached objects condensed to what their readers need: a workload's spec kept as a digest.

A DaemonSet's pod template is most of what the operator caches per Falco, and only the applier reads it, to tell
whether an apply would change anything. The cache keeps the template's digest instead; the applier compares that
with the digest of the spec the API server returned after its own last apply, and reads the object in full when
they differ (someone else changed it, or nothing was applied since the operator started).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

Json = dict[str, Any]

DIGESTS = "falco-operator.dev/digests"
"""Key of a condensed object (not a Kubernetes field): the digest of each field that was taken out."""

CONDENSED_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("apps/v1", "DaemonSet"): ("spec",),
    ("apps/v1", "Deployment"): ("spec",),
}
"""The fields ``condense_workload`` takes out, by API version and kind: what an applier remembers digests of."""

WORKLOAD_SPEC_KEPT = ("replicas",)
"""What the status reads of a workload's spec."""


def digest(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def condense_workload(obj: Json) -> Json:
    """Informer transform for DaemonSets and Deployments: ``spec`` as its digest plus ``spec.replicas``."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return obj
    condensed = {key: value for key, value in obj.items() if key != "spec"}
    condensed["spec"] = {key: spec[key] for key in WORKLOAD_SPEC_KEPT if key in spec}
    condensed[DIGESTS] = {"spec": digest(spec)}
    return condensed


def condensed_digests(obj: Json) -> dict[str, str] | None:
    """The digests of the fields a condensed object lacks; None for an object kept whole."""
    digests = obj.get(DIGESTS)
    return digests if isinstance(digests, dict) else None
