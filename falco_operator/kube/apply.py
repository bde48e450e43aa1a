"""Server-side apply that skips the call when nothing it owns would change: zero writes in steady state."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .client import Client
from .resources import Resource

Json = dict[str, Any]


def _is_zero(value: Any) -> bool:
    return value is False or value == 0 or value == "" if isinstance(value, (bool, int, str)) else False


def project(live: Any, desired: Any) -> Any:
    """The part of ``live`` shaped like ``desired``: the values of exactly the fields ``desired`` sets.

    The API server leaves out fields whose value is the zero value (``readOnly: false``), so a desired zero
    scalar counts as present when the live object lacks the field.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return live
        return {
            key: value if key not in live and _is_zero(value) else project(live.get(key), value)
            for key, value in desired.items()
        }
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
    projection: str
    """Digest of what the API server returned for the desired fields (a digest, not the fields: memory)."""


class Applier:
    """Applies desired objects; skips when the live object (from an informer cache) shows nothing would change.

    Every applied object carries an annotation with the hash of the desired object. A call is skipped only
    when that hash is unchanged (so a field dropped from the desired object still reaches the API server, which
    then removes it) and the live values of the desired fields are as wanted: equal to the desired ones, or to
    what the API server returned after this applier's last apply (the server normalizes some values, such as
    quantities).
    """

    def __init__(self, client: Client, hash_annotation: str | None = None) -> None:
        self.client = client
        self.hash_annotation = hash_annotation or f"{client.field_manager}/applied-hash"
        self._applied: dict[tuple[str, str, str, str], _Applied] = {}
        self.calls = 0
        self.skips = 0

    async def apply(self, resource: Resource, desired: Json, live: Json | None) -> Json | None:
        """Apply ``desired`` unless ``live`` shows it is in place; returns the API server's answer, None if skipped."""
        metadata = desired["metadata"]
        key = (resource.api_version, resource.kind, str(metadata.get("namespace") or ""), str(metadata["name"]))
        digest = _digest(desired)
        stamped = {**desired, "metadata": {**metadata, "annotations": {**(metadata.get("annotations") or {}),
                                                                        self.hash_annotation: digest}}}  # fmt: skip
        if (
            live is not None
            and ((live.get("metadata") or {}).get("annotations") or {}).get(self.hash_annotation) == digest
        ):
            projection = project(live, stamped)
            remembered = self._applied.get(key)
            if projection == stamped or (
                remembered and remembered.digest == digest and remembered.projection == _digest(projection)
            ):
                self.skips += 1
                return None
        self.calls += 1
        result = await self.client.apply(resource, stamped)
        self._applied[key] = _Applied(digest, _digest(project(result, stamped)))
        return result

    def has_applied(self, resource: Resource, namespace: str, name: str) -> bool:
        return (resource.api_version, resource.kind, namespace, name) in self._applied

    def forget(self, resource: Resource, namespace: str, name: str) -> None:
        self._applied.pop((resource.api_version, resource.kind, namespace, name), None)
