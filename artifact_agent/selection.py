"""Which artifacts apply to this agent's pod (``Audience``: its Node's labels, its Falco's name and labels)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from falco_operator.artifacts import Artifact, parse_artifact
from falco_operator.artifacts.audience import Audience

Json = dict[str, Any]


class ParsedArtifacts:
    """Artifact models by object uid and ``resourceVersion``: a pass reads every artifact, and between two passes
    all but the changed ones are the objects read the time before (validating 50 models was most of the CPU a
    pass spent outside the rules checks). Models are never changed after they are read, so one can be shared."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._models: OrderedDict[tuple[str, str], Artifact | None] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, raw: Json) -> Artifact | None:
        metadata = raw.get("metadata") or {}
        uid, version = metadata.get("uid"), metadata.get("resourceVersion")
        if not (isinstance(uid, str) and isinstance(version, str)):
            return parse_artifact(raw)
        key = (uid, version)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        artifact = parse_artifact(raw)
        with self._lock:
            self._models[key] = artifact
            while len(self._models) > self._capacity:
                self._models.popitem(last=False)
        return artifact


_PARSED = ParsedArtifacts()


def applies(
    artifact: Artifact, node_labels: Mapping[str, str], falco_labels: Mapping[str, str], instance: str | None = None
) -> bool:
    return Audience.of(artifact).includes(instance or "", falco_labels, node_labels)


def select(
    objects: Iterable[Json],
    node_labels: Mapping[str, str],
    falco_labels: Mapping[str, str],
    instance: str | None = None,
    parsed: ParsedArtifacts = _PARSED,
) -> tuple[list[Artifact], list[Json]]:
    """(artifacts that apply, raw objects that could not be read); deleted objects are already absent."""
    chosen: list[Artifact] = []
    unreadable: list[Json] = []
    for raw in objects:
        if (raw.get("metadata") or {}).get("deletionTimestamp"):
            continue
        artifact = parsed.read(raw)
        if artifact is None:
            unreadable.append(raw)
        elif applies(artifact, node_labels, falco_labels, instance):
            chosen.append(artifact)
    return chosen, unreadable
