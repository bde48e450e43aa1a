"""Which artifacts apply: ``selector`` against the agent's Node labels, ``instanceSelector`` against its Falco's,
and the ``artifact.falcosecurity.dev/for-falco`` label (set on generated artifacts) against its Falco's name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from falco_operator.artifacts import Artifact, parse_artifact

Json = dict[str, Any]


FOR_FALCO_LABEL = "artifact.falcosecurity.dev/for-falco"


def applies(
    artifact: Artifact, node_labels: Mapping[str, str], falco_labels: Mapping[str, str], instance: str | None = None
) -> bool:
    for_falco = (artifact.metadata.labels or {}).get(FOR_FALCO_LABEL)
    if for_falco is not None and for_falco != instance:
        return False
    spec = artifact.spec
    if spec.selector is not None and not spec.selector.matches(dict(node_labels)):
        return False
    return spec.instance_selector is None or spec.instance_selector.matches(dict(falco_labels))


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
