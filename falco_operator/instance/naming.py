"""Names and labels of the objects built for one Falco: unique per namespace and, for cluster objects, per cluster."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

MANAGED_BY = "app.kubernetes.io/managed-by"
OPERATOR = "falco-operator"
INSTANCE_LABEL = "app.kubernetes.io/instance"
NAME_LABEL = "app.kubernetes.io/name"
# Cluster-scoped objects cannot carry an ownerReference to a namespaced Falco: these labels lead back to it.
OWNER_NAMESPACE_LABEL = "instance.falcosecurity.dev/falco-namespace"
OWNER_NAME_LABEL = "instance.falcosecurity.dev/falco-name"
CONFIG_HASH_ANNOTATION = "instance.falcosecurity.dev/config-hash"


def cluster_object_name(namespace: str, name: str) -> str:
    """``falco:<namespace>:<name>``: colons cannot occur in either part, so no two Falcos collide."""
    return f"falco:{namespace}:{name}"


def selector_labels(name: str, app: str = "falco") -> dict[str, str]:
    """The workload selector: immutable, so only what never changes (``app``: what runs, ``falco`` or a
    Component's type)."""
    return {NAME_LABEL: app, INSTANCE_LABEL: name}


def propagated_labels(labels: dict[str, str] | None, excluded: tuple[str, ...]) -> dict[str, str]:
    return {
        key: value
        for key, value in (labels or {}).items()
        if not any(fnmatchcase(key, pattern) for pattern in excluded) and key not in (MANAGED_BY, INSTANCE_LABEL)
    }


def object_labels(
    name: str, falco_labels: dict[str, str] | None, excluded: tuple[str, ...], app: str = "falco"
) -> dict[str, str]:
    return {**propagated_labels(falco_labels, excluded), **selector_labels(name, app), MANAGED_BY: OPERATOR}


def owner_reference(falco: dict[str, Any]) -> dict[str, Any]:
    """The controller reference to ``falco``, a Falco or any other object of the operator (a Component)."""
    metadata = falco["metadata"]
    return {
        "apiVersion": falco["apiVersion"],
        "kind": falco.get("kind") or "Falco",
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_metadata(name: str, namespace: str, falco_labels: dict[str, str] | None, excluded: tuple[str, ...],
                   raw_falco: dict[str, Any], app: str = "falco") -> dict[str, Any]:  # fmt: skip
    """Metadata of a namespaced object owned (and garbage-collected) with its Falco (or Component)."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": object_labels(name, falco_labels, excluded, app),
        "ownerReferences": [owner_reference(raw_falco)],
    }
