"""Server-side apply that skips the call when nothing it owns would change: zero writes in steady state."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .client import Client
from .resources import Resource

Json = dict[str, Any]


def project(live: Any, desired: Any) -> Any:
    """The part of ``live`` shaped like ``desired``: the values of exactly the fields ``desired`` sets."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return live
        return {key: project(live.get(key), value) for key, value in desired.items()}
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return live
        return [project(item, wanted) for item, wanted in zip(live, desired, strict=True)]
    return live


def _digest(desired: Json) -> str:
    return hashlib.sha256(json.dumps(desired, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class _Applied:
    digest: str
    projection: Any


class Applier:
    """Applies desired objects; skips when the live object already holds what would be applied.

    Two checks, either is enough to skip: the live object's fields equal the desired ones; or the desired
    object is what this applier applied last and the live fields are as the API server returned them then
    (the server normalizes some values, such as quantities, so they need not equal the desired text).
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self._applied: dict[tuple[str, str, str, str], _Applied] = {}
        self.calls = 0
        self.skips = 0

    async def apply(self, resource: Resource, desired: Json, live: Json | None) -> Json | None:
        """Apply ``desired`` unless ``live`` (from an informer cache) shows it is in place; None when skipped."""
        metadata = desired["metadata"]
        key = (resource.api_version, resource.kind, str(metadata.get("namespace") or ""), str(metadata["name"]))
        digest = _digest(desired)
        if live is not None:
            projection = project(live, desired)
            remembered = self._applied.get(key)
            if projection == desired or (
                remembered and remembered.digest == digest and remembered.projection == projection
            ):
                self.skips += 1
                return None
        self.calls += 1
        result = await self.client.apply(resource, desired)
        self._applied[key] = _Applied(digest, project(result, desired))
        return result

    def has_applied(self, resource: Resource, namespace: str, name: str) -> bool:
        return (resource.api_version, resource.kind, namespace, name) in self._applied

    def forget(self, resource: Resource, namespace: str, name: str) -> None:
        self._applied.pop((resource.api_version, resource.kind, namespace, name), None)
