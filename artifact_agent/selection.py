"""Which artifacts apply to this agent's pod (``Audience``: its Node's labels, its Falco's name and labels)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from falco_operator.artifacts import Artifact, parse_artifact
from falco_operator.artifacts.audience import Audience

Json = dict[str, Any]


def applies(
    artifact: Artifact, node_labels: Mapping[str, str], falco_labels: Mapping[str, str], instance: str | None = None
) -> bool:
    return Audience.of(artifact).includes(instance or "", falco_labels, node_labels)


def select(
    objects: Iterable[Json],
    node_labels: Mapping[str, str],
    falco_labels: Mapping[str, str],
    instance: str | None = None,
) -> tuple[list[Artifact], list[Json]]:
    """(artifacts that apply, raw objects that could not be read); deleted objects are already absent."""
    chosen: list[Artifact] = []
    unreadable: list[Json] = []
    for raw in objects:
        if (raw.get("metadata") or {}).get("deletionTimestamp"):
            continue
        artifact = parse_artifact(raw)
        if artifact is None:
            unreadable.append(raw)
        elif applies(artifact, node_labels, falco_labels, instance):
            chosen.append(artifact)
    return chosen, unreadable
