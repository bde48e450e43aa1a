"""Merge a user's PodTemplateSpec overlay over the generated default one, with server-side-apply-like list semantics.

Inputs and outputs are plain Kubernetes API dicts (camelCase); the inputs are never mutated.
"""

from __future__ import annotations

import copy
from typing import Any

# Lists merged item by item; the value names the item fields that together identify an item.
# Semantics follow the field name wherever it appears (e.g. ``env`` in any kind of container).
LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "env": ("name",),
    "imagePullSecrets": ("name",),
    "resourceClaims": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "ports": ("containerPort", "protocol"),
    "hostAliases": ("ip",),
    "readinessGates": ("conditionType",),
    "resizePolicy": ("resourceName",),
}

# Key fields the API server defaults, so an item that omits them still matches one that spells the default out.
_KEY_DEFAULTS: dict[str, dict[str, Any]] = {"ports": {"protocol": "TCP"}}

# Fields the overlay replaces whole. Lists missing from LIST_KEYS are atomic anyway; they are listed for clarity.
ATOMIC_FIELDS: frozenset[str] = frozenset({"tolerations", "nodeSelector", "args", "command", "envFrom"})


def merge_pod_template(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Return a new PodTemplateSpec: ``overlay`` merged over ``base``; ``None`` overlay values count as absent."""
    return _merge_map(copy.deepcopy(base), overlay)


# The helpers below own their ``base`` argument (already a private copy) and copy whatever they take from ``overlay``.


def _merge_map(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    for field, value in overlay.items():
        if value is not None:
            base[field] = _merge_value(field, base.get(field), value)
    return base


def _merge_value(field: str, base: Any, overlay: Any) -> Any:
    if field in ATOMIC_FIELDS:
        return copy.deepcopy(overlay)
    if isinstance(overlay, dict):
        return _merge_map(base if isinstance(base, dict) else {}, overlay)
    if isinstance(overlay, list) and field in LIST_KEYS:
        return _merge_keyed_list(field, base if isinstance(base, list) else [], overlay)
    return copy.deepcopy(overlay)


def _merge_keyed_list(field: str, base: list[Any], overlay: list[Any]) -> list[Any]:
    base_keys = _item_keys(field, base)
    overlay_keys = _item_keys(field, overlay)
    if base_keys is None or overlay_keys is None:
        return copy.deepcopy(overlay)
    pending = dict(zip(overlay_keys, overlay, strict=True))
    merged = [
        _merge_item(field, item, pending.pop(key)) if key in pending else item
        for key, item in zip(base_keys, base, strict=True)
    ]
    merged.extend(_merge_item(field, {}, item) for item in pending.values())
    return merged


def _item_keys(field: str, items: list[Any]) -> list[tuple[Any, ...]] | None:
    """Each item's key, or ``None`` (merge atomically) if an item is not a map, lacks its key or repeats another's."""
    defaults = _KEY_DEFAULTS.get(field, {})
    keys: list[tuple[Any, ...]] = []
    for item in items:
        if not isinstance(item, dict):
            return None
        key = tuple(defaults.get(name) if item.get(name) is None else item[name] for name in LIST_KEYS[field])
        if not all(isinstance(part, str | int) for part in key):
            return None
        keys.append(key)
    return keys if len(set(keys)) == len(keys) else None


def _merge_item(field: str, base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    # A volume has exactly one source (emptyDir, hostPath, configMap, ...). Merging two sources would yield an invalid
    # volume, so an overlay that says anything besides the name replaces the base volume's source entirely.
    if field == "volumes" and any(key != "name" and value is not None for key, value in overlay.items()):
        base = {key: value for key, value in base.items() if key == "name"}
    return _merge_map(base, overlay)
