"""Server-side apply that skips the call when nothing it owns would change: zero writes in steady state."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from .client import Client
from .condensed import CONDENSED_FIELDS, condensed_digests
from .condensed import digest as _digest
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


@dataclass(frozen=True, slots=True)
class _Applied:
    digest: str
    projection: str
    """Digest of what the API server returned for the desired fields (a digest, not the fields: memory)."""
    fields: dict[str, str] = field(default_factory=dict)
    """For an object the cache keeps condensed: the digest of each condensed field as the API server returned it,
    and under ``""`` the digest of the projection of the rest."""


def _without(obj: Json, fields: Collection[str]) -> Json:
    return {key: value for key, value in obj.items() if key not in fields}


def _in_place(live: Json, stamped: Json, remembered: _Applied | None, digest: str) -> tuple[bool, str]:
    """Whether the live values of the desired fields are as wanted; and the digest of their projection."""
    projection = project(live, stamped)
    projected = _digest(projection)
    wanted = projection == stamped or (
        remembered is not None and remembered.digest == digest and remembered.projection == projected
    )
    return wanted, projected


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
        self.full_reads = 0
        """Objects read in full because their condensed cache entry could not tell (after a restart, or a change)."""

    async def apply(self, resource: Resource, desired: Json, live: Json | None) -> Json | None:
        """Apply ``desired`` unless ``live`` shows it is in place; returns the API server's answer, None if skipped.

        ``live`` may be condensed (``kube/condensed.py``): then the skip also needs the condensed fields to be as
        the API server returned them after this applier's last apply, or the object read in full to show it.
        """
        metadata = desired["metadata"]
        key = (resource.api_version, resource.kind, str(metadata.get("namespace") or ""), str(metadata["name"]))
        digest = _digest(desired)
        stamped = {**desired, "metadata": {**metadata, "annotations": {**(metadata.get("annotations") or {}),
                                                                        self.hash_annotation: digest}}}  # fmt: skip
        if live is not None and _annotations(live).get(self.hash_annotation) == digest:
            remembered = self._applied.get(key)
            condensed = condensed_digests(live)
            if condensed is None:
                if _in_place(live, stamped, remembered, digest)[0]:
                    self.skips += 1
                    return None
            elif self._condensed_in_place(live, stamped, condensed, remembered, digest):
                self.skips += 1
                return None
            else:
                self.full_reads += 1
                full = await self.client.get_or_none(resource, str(metadata["name"]), metadata.get("namespace"))
                if full is not None and _annotations(full).get(self.hash_annotation) == digest:
                    wanted, projected = _in_place(full, stamped, remembered, digest)
                    if wanted:
                        self._applied[key] = _remember(digest, projected, full, stamped, tuple(condensed))
                        self.skips += 1
                        return None
        self.calls += 1
        result = await self.client.apply(resource, stamped)
        fields = CONDENSED_FIELDS.get((resource.api_version, resource.kind), ())
        self._applied[key] = _remember(digest, _digest(project(result, stamped)), result, stamped, fields)
        return result

    @staticmethod
    def _condensed_in_place(
        live: Json, stamped: Json, condensed: dict[str, str], remembered: _Applied | None, digest: str
    ) -> bool:
        if remembered is None or remembered.digest != digest:
            return False
        if any(remembered.fields.get(name) != value for name, value in condensed.items()):
            return False
        rest = _without(stamped, condensed)
        projection = project(_without(live, condensed), rest)
        return projection == rest or _digest(projection) == remembered.fields.get("")

    def has_applied(self, resource: Resource, namespace: str, name: str) -> bool:
        return (resource.api_version, resource.kind, namespace, name) in self._applied

    def forget(self, resource: Resource, namespace: str, name: str) -> None:
        self._applied.pop((resource.api_version, resource.kind, namespace, name), None)


def _annotations(obj: Json) -> dict[str, Any]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _remember(digest: str, projected: str, full: Json, stamped: Json, condensed: tuple[str, ...]) -> _Applied:
    if not condensed:
        return _Applied(digest, projected)
    fields = {name: _digest(full.get(name)) for name in condensed}
    fields[""] = _digest(project(_without(full, condensed), _without(stamped, condensed)))
    return _Applied(digest, projected, fields)
