"""``metav1.Condition`` lists: transition times that move only when a condition's status does."""

from __future__ import annotations

import datetime
from typing import Any

Json = dict[str, Any]


def utc_now() -> str:
    """Now, as the API server writes a condition's ``lastTransitionTime`` (seconds, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_transition_times(new: list[Json], old: list[Json] | None, now: str) -> list[Json]:
    """Keep a condition's lastTransitionTime while its status stays the same."""
    previous = {c.get("type"): c for c in old or []}
    result = []
    for condition in new:
        before = previous.get(condition["type"])
        same = before is not None and before.get("status") == condition["status"]
        stamp = before.get("lastTransitionTime") if same and before else now
        result.append({**condition, "lastTransitionTime": stamp or now})
    return result
