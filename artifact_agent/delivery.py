"""Which content each artifact delivers on this node during a staged rollout (a pure choice, made every pass).

An artifact with ``spec.rollout`` and ``status.rollout`` is delivered as it is in the API only where
``falco_operator.rollout.effective.delivers_live`` says so (the operator's own rule). Every other node delivers the
artifact's stable generation, read from the snapshot ConfigMap the operator keeps (``status.rollout.snapshot``):
its ``artifact.json`` is the stable artifact (same kind and name, so the same file names; its generation is the
stable one, which the report states), its OCI source pinned to a digest (pulled as any OCI source), and the bytes
of its ConfigMap source in ``binaryData`` ``configmap-content`` (used instead of the user's ConfigMap, which may
have changed since). A snapshot that cannot be read withholds the artifact: its last good files stay, Pending.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import field, replace

from falco_operator.api.plain import SNAPSHOT_CONTENT_KEY, SNAPSHOT_KEY, RolloutAnalysis
from falco_operator.artifacts import (
    Artifact,
    ArtifactKey,
    Content,
    Resolution,
    Unavailable,
    artifact_key,
    parse_artifact,
)
from falco_operator.records import record
from falco_operator.rollout.effective import LIVE_PHASES, delivers_live

from .sources import config_map_reference

ReadKey = Callable[[str, str], Resolution]
"""Reads one key of a ConfigMap of the namespace: (name, key) → its bytes, or why not."""


@record(frozen=True)
class Candidate:
    """A rollout's candidate generation that this node delivers: the agent watches Falco running it."""

    generation: int
    analysis: RolloutAnalysis


@record(frozen=True)
class Deliveries:
    artifacts: list[Artifact]
    """What to plan: each artifact as it is in the API, or its stable generation."""
    config_maps: frozenset[str]
    """The ConfigMaps to watch: the users' ConfigMaps that live artifacts read, and the snapshots."""
    config_map_content: Mapping[ArtifactKey, Content] = field(default_factory=dict)
    """The ConfigMap source's bytes of a stable generation (from its snapshot), used instead of reading the
    user's ConfigMap."""
    withheld: Mapping[ArtifactKey, Unavailable] = field(default_factory=dict)
    """Artifacts whose stable generation cannot be read now: their last good files stay."""
    candidates: Mapping[ArtifactKey, Candidate] = field(default_factory=dict)
    """Artifacts whose candidate generation this node delivers, in a rollout that is Progressing or Paused."""


def choose(artifacts: Iterable[Artifact], node: str, read: ReadKey) -> Deliveries:
    """What this node delivers of each artifact that applies to it (``read``: the watched ConfigMaps)."""
    chosen: list[Artifact] = []
    watched: set[str] = set()
    content: dict[ArtifactKey, Content] = {}
    withheld: dict[ArtifactKey, Unavailable] = {}
    candidates: dict[ArtifactKey, Candidate] = {}
    for artifact in artifacts:
        key = artifact_key(artifact)
        rollout = artifact.status.rollout if artifact.status is not None else None
        # The rule needs the wire form; most artifacts have no rollout and skip building it.
        if artifact.spec.rollout is None or rollout is None or delivers_live(artifact.to_wire(), node):
            chosen.append(artifact)
            reference = config_map_reference(artifact)
            watched.update([reference[0]] if reference else [])
            if artifact.spec.rollout is not None and rollout is not None and rollout.snapshot:
                # Watched before it is needed: when the next edit starts a rollout this node is not part of, the
                # stable generation is read at once, not reported Pending while a new watch lists it.
                watched.add(rollout.snapshot)
            in_step = rollout is not None and rollout.phase in LIVE_PHASES
            if in_step and artifact.spec.rollout is not None and artifact.metadata.generation is not None:
                candidates[key] = Candidate(artifact.metadata.generation, artifact.spec.rollout.analysis)
            continue
        assert rollout is not None  # delivers_live is True without a status.rollout
        snapshot = rollout.snapshot
        if snapshot:
            watched.add(snapshot)
        stable = _stable(artifact, snapshot, read)
        if isinstance(stable, Unavailable):
            withheld[key] = stable
            stable_generation = rollout.stable_generation or artifact.metadata.generation
            chosen.append(replace(artifact, metadata=replace(artifact.metadata, generation=stable_generation)))
            continue
        stable_artifact, stable_content = stable
        chosen.append(stable_artifact)
        if stable_content is not None:
            content[key] = stable_content
    return Deliveries(chosen, frozenset(watched), content, withheld, candidates)


def _stable(artifact: Artifact, snapshot: str | None, read: ReadKey) -> tuple[Artifact, Content | None] | Unavailable:
    """The stable generation from its snapshot, with its ConfigMap source's bytes when it has one."""
    kind, name = artifact.kind, artifact.metadata.name or ""
    if not snapshot:
        return _pending("SnapshotMissing", f"the rollout names no snapshot of the stable generation of {kind} {name}")
    document = read(snapshot, SNAPSHOT_KEY)
    if isinstance(document, Unavailable):
        return _pending("SnapshotUnavailable", f"snapshot ConfigMap {snapshot}: {document.message}")
    try:
        raw = json.loads(document.data)
    except ValueError as error:
        return _pending("SnapshotUnreadable", f"snapshot ConfigMap {snapshot}: {SNAPSHOT_KEY} is not JSON: {error}")
    stable = parse_artifact(raw) if isinstance(raw, dict) else None
    if stable is None or stable.kind != kind or stable.metadata.name != name:
        return _pending("SnapshotUnreadable", f"snapshot ConfigMap {snapshot}: {SNAPSHOT_KEY} is not {kind} {name}")
    stable = replace(stable, metadata=replace(stable.metadata, namespace=artifact.metadata.namespace))
    if config_map_reference(stable) is None:
        return stable, None
    bytes_kept = read(snapshot, SNAPSHOT_CONTENT_KEY)
    if isinstance(bytes_kept, Unavailable):
        return _pending("SnapshotUnreadable", f"snapshot ConfigMap {snapshot}: {bytes_kept.message}")
    return stable, bytes_kept


def _pending(reason: str, message: str) -> Unavailable:
    return Unavailable("Pending", reason, message + " (until it can be read)")
