"""Which Falcos a Component event concerns: those of its namespace that name it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..kube import Cache, Predicate, Request
from ..resources import FALCOS

Json = dict[str, Any]


def _available(obj: Json) -> str | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Available":
            return str(condition.get("status"))
    return None


AVAILABILITY_CHANGED = Predicate(update=lambda old, new: _available(old) != _available(new))
"""A Component's Available condition changed status (its replica counts alone change nothing for Falco)."""


def names(raw_falco: Json, component: str) -> bool:
    """Whether the Falco's spec names the Component (read raw: an unreadable spec is the reconcile's to report)."""
    spec = raw_falco.get("spec") or {}
    return any(isinstance(spec.get(role), dict) and spec[role].get("name") == component
               for role in ("sidekick", "metacollector"))  # fmt: skip


def falcos_naming(cache: Cache) -> Callable[[Json], list[Request]]:
    def mapped(component: Json) -> list[Request]:
        metadata = component.get("metadata") or {}
        namespace, name = metadata.get("namespace") or "", metadata.get("name") or ""
        return [Request.for_object(falco) for falco in cache.in_namespace(FALCOS, namespace) if names(falco, name)]

    return mapped
