"""The snapshot ConfigMap of an artifact's stable generation: what agents outside a step deliver, exactly.

The live spec changes the moment a user edits it, a ConfigMap source likewise, and an OCI tag moves; the snapshot
keeps the spec as it was (OCI sources pinned to the digest the nodes installed) and the bytes read from its
ConfigMap source. Pure: building it reads nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..api.ocirefs import DEFAULT_REGISTRY, parse_reference
from ..api.plain import SNAPSHOT_CONTENT_KEY, SNAPSHOT_KEY

Json = dict[str, Any]
MAX_SNAPSHOT_BYTES = 512 * 1024
"""The most a snapshot holds (its spec and ConfigMap content together): a larger stable generation is not kept,
and the artifact's changes go to every node at once (docs/rollout.md)."""
MANAGED_BY = {"app.kubernetes.io/managed-by": "falco-operator"}
SNAPSHOT_OF_LABEL = "artifact.falcosecurity.dev/snapshot-of"
MAX_LABEL_VALUE = 63


@dataclass(frozen=True)
class Snapshot:
    body: Json
    """The ConfigMap, for a server-side apply."""
    size: int


@dataclass(frozen=True)
class Unbuildable:
    reason: str
    too_large: bool = False


def pinned(oci: Json, digest: str) -> Json:
    """An ``ociArtifact`` (either form) as a ``reference`` to ``digest``, its credentials, transport settings and
    signature policy kept; a digest does not move, so there is nothing to refresh."""
    registry = dict(oci.get("registry") or {})
    if oci.get("reference"):
        host, repository, _, _ = parse_reference(str(oci["reference"]))
    else:
        host, repository = str(registry.get("name") or DEFAULT_REGISTRY), str((oci.get("image") or {})["repository"])
    result = {key: value for key, value in oci.items() if key not in ("reference", "image", "registry",
                                                                        "refreshInterval")}  # fmt: skip
    registry.pop("name", None)
    if registry:
        result["registry"] = registry
    result["reference"] = f"{host}/{repository}@{digest}"
    return result


def has_oci_source(oci: Json | None) -> bool:
    return bool(oci and (oci.get("reference") or oci.get("image")))


def label_value(text: str) -> str:
    """``text`` as a label value (63 characters at most: cut, with a hash of the whole)."""
    if len(text) <= MAX_LABEL_VALUE:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{text[: MAX_LABEL_VALUE - 11].rstrip('-._')}-{digest}"


def build(
    raw: Json, generation: int, name: str, *, digest: str | None, config_map_content: bytes | None
) -> Snapshot | Unbuildable:
    """The snapshot of ``raw`` (an artifact object at ``generation``) named ``name``.

    ``digest`` is the OCI digest its nodes installed (needed when it has an OCI source); ``config_map_content``
    the bytes of its ConfigMap source (needed when it has one).
    """
    metadata = raw.get("metadata") or {}
    kind, artifact_name = str(raw.get("kind")), str(metadata.get("name"))
    spec = dict(raw.get("spec") or {})
    oci = spec.get("ociArtifact")
    if isinstance(oci, dict) and has_oci_source(oci):
        if not digest:
            return Unbuildable(f"the OCI digest generation {generation} resolved to is not known yet")
        spec["ociArtifact"] = pinned(oci, digest)
    if spec.get("configMapRef") and config_map_content is None:
        return Unbuildable(f"the content of ConfigMap {spec['configMapRef'].get('name')} could not be read")
    artifact = {"apiVersion": raw.get("apiVersion"), "kind": kind,
                "metadata": {"name": artifact_name, "generation": generation}, "spec": spec}  # fmt: skip
    text = json.dumps(artifact, sort_keys=True, separators=(",", ":"))
    content = config_map_content if spec.get("configMapRef") else None
    size = len(text.encode()) + len(content or b"")
    if size > MAX_SNAPSHOT_BYTES:
        cap = MAX_SNAPSHOT_BYTES // 1024
        return Unbuildable(f"generation {generation} takes {size} bytes, over the {cap} KiB cap of a rollout "
                           "snapshot: its changes go to every node at once", too_large=True)  # fmt: skip
    body: Json = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": name, "namespace": metadata.get("namespace"),
            "labels": {**MANAGED_BY, SNAPSHOT_OF_LABEL: label_value(f"{kind}.{artifact_name}")},
            "ownerReferences": [{"apiVersion": raw.get("apiVersion"), "kind": kind, "name": artifact_name,
                                 "uid": metadata.get("uid"), "controller": True, "blockOwnerDeletion": False}],
        },
        "data": {SNAPSHOT_KEY: text},
    }  # fmt: skip
    if content is not None:
        body["binaryData"] = {SNAPSHOT_CONTENT_KEY: base64.b64encode(content).decode()}
    return Snapshot(body, size)
