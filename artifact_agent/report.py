"""The agent's ArtifactReport: one per agent pod, owned by the pod, written only when what it says changes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from falco_operator.api.plain_report import (
    ArtifactReportStatus,
    FalcoProbe,
    RefreshProblem,
    ReportedAnalysis,
    ReportedArtifact,
    ReportedImageDefaults,
)
from falco_operator.artifacts import ArtifactKey, Outcome, Unavailable, sha256_hex
from falco_operator.artifacts.image_defaults import CONTAINER_PLUGIN, IMAGE_RULES_PATH, ImageDefaultsInUse
from falco_operator.artifacts.naming import Medium, parse_artifact_file_name
from falco_operator.kube import ApiError, Client, Conflict, NotFound
from falco_operator.kube.retry import RetryPolicy, with_retries
from falco_operator.records import record
from falco_operator.resources import ARTIFACTREPORTS

log = logging.getLogger("artifact_agent.report")
Json = dict[str, Any]


def report_status(
    outcomes: Iterable[Outcome], directories: Mapping[str, Path], falco: FalcoProbe | None = None,
    refresh_problems: Mapping[ArtifactKey, Unavailable] | None = None, image_defaults: ImageDefaultsInUse | None = None,
    signers: Mapping[ArtifactKey, tuple[str, str]] | None = None,
    analyses: Mapping[ArtifactKey, ReportedAnalysis] | None = None, entries: ReportedEntries | None = None,
) -> Json:  # fmt: skip
    """The ``status`` of the report: one entry per applicable artifact, in a stable order; what Falco says; why an
    OCI source could not be resolved again (``refresh_problems``), apart from the state of what is delivered; what
    Falco loads from its image (``image_defaults``); who signed each verified OCI artifact (``signers``: its
    digest and the keys' fingerprints), shown while that digest is the one delivered; the verdicts on rollout
    candidates this node delivers (``analyses``), each on the entry of the generation it judged. ``entries``: the
    entries of the previous reports, reused where what they are made of did not change (the same status)."""
    problems = refresh_problems or {}
    verdicts = analyses or {}
    signed_by = signers or {}
    memo = entries if entries is not None else ReportedEntries()
    folders = tuple(directories.items())
    reported = [
        memo.entry(outcome, folders, signed_by.get(outcome.key), problems.get(outcome.key), verdicts.get(outcome.key))
        for outcome in sorted(outcomes, key=lambda outcome: outcome.key)
    ]
    memo.keep_only(reported)
    image = reported_image_defaults(image_defaults) if image_defaults is not None else None
    return {"artifacts": [wire for _, wire in reported],
            **ArtifactReportStatus(falco=falco, image_defaults=image).to_wire()}  # fmt: skip


Inputs = tuple[Any, ...]


class ReportedEntries:
    """Each artifact's entry in the report (its JSON form), kept with everything it was made of: a pass rebuilds
    only the entries of artifacts whose outcome, signer, refresh problem or verdict changed (most passes change
    one artifact of many, or none). Entries are shared between the statuses built: nobody changes them."""

    def __init__(self) -> None:
        self._entries: dict[ArtifactKey, tuple[Inputs, Json]] = {}

    def entry(
        self, outcome: Outcome, directories: tuple[tuple[str, Path], ...], signed: tuple[str, str] | None,
        problem: Unavailable | None, verdict: ReportedAnalysis | None,
    ) -> tuple[ArtifactKey, Json]:  # fmt: skip
        delivered = outcome.delivered
        # Compared, never hashed: bytes compare by identity first (the same objects from pass to pass), then
        # by content.
        inputs = (outcome.generation, outcome.state, outcome.reason, outcome.message, delivered.digest,
                  list(delivered.files.items()), signed, problem, verdict, directories)  # fmt: skip
        known = self._entries.get(outcome.key)
        if known is not None and known[0] == inputs:
            return outcome.key, known[1]
        wire = _entry(outcome, dict(directories), signed, problem, verdict).to_wire()
        self._entries[outcome.key] = (inputs, wire)
        return outcome.key, wire

    def keep_only(self, reported: Sequence[tuple[ArtifactKey, Json]]) -> None:
        """Forget the artifacts no longer reported."""
        if len(self._entries) == len(reported):
            return  # every key reported has an entry: the same keys
        current = {key for key, _ in reported}
        for key in [key for key in self._entries if key not in current]:
            del self._entries[key]


def _entry(
    outcome: Outcome, directories: Mapping[str, Path], signed: tuple[str, str] | None, problem: Unavailable | None,
    verdict: ReportedAnalysis | None,
) -> ReportedArtifact:  # fmt: skip
    return ReportedArtifact(
        kind=outcome.key.kind,
        name=outcome.key.name,
        generation=outcome.generation,
        digest=outcome.delivered.digest,
        signer=_signer(signed, outcome.delivered.digest),
        sha256=outcome.sha256,
        config_map_sha256=config_map_sha256(outcome),
        files=sorted(str(directories[directory] / name) for directory, name in outcome.delivered.files) or None,
        state=outcome.state,
        reason=outcome.reason,
        message=_clipped(outcome.message),
        refresh_problem=_refresh_problem(problem),
        analysis=_analysis(verdict, outcome.generation),
    )


def _analysis(verdict: ReportedAnalysis | None, delivered: int | None) -> ReportedAnalysis | None:
    if verdict is None or verdict.generation != delivered:
        return None
    return replace(verdict, message=_clipped(verdict.message))


def _signer(signed: tuple[str, str] | None, delivered: str | None) -> str | None:
    return signed[1] if signed is not None and signed[0] == delivered else None


def reported_image_defaults(in_use: ImageDefaultsInUse) -> ReportedImageDefaults:
    rules_replaced, plugin_replaced = in_use.rules_replaced_by, in_use.plugin_replaced_by
    replaced_by = [f"{key.kind}/{key.name}" for key in (rules_replaced, plugin_replaced) if key is not None]
    return ReportedImageDefaults(
        rules=None if rules_replaced else [IMAGE_RULES_PATH],
        rules_sha256=None if rules_replaced else in_use.rules_sha256,
        plugins=None if plugin_replaced else [CONTAINER_PLUGIN],
        replaced_by=replaced_by or None,
    )


def config_map_sha256(outcome: Outcome) -> str | None:
    """The SHA-256 of the file written from the artifact's ConfigMap source (its bytes are the key's, as read)."""
    for (_, name), data in outcome.delivered.files.items():
        parsed = parse_artifact_file_name(name)
        if parsed is not None and parsed.medium is Medium.CONFIGMAP:
            return sha256_hex(data)
    return None


MAX_MESSAGE_CHARS = 1024
"""The longest message per artifact: a report holds one entry per artifact, and a report the API server refuses
for its size would leave the operator reading a stale one."""


def _clipped(message: str | None) -> str | None:
    if message is None or len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 14] + " ... (clipped)"


def _refresh_problem(problem: Unavailable | None) -> RefreshProblem | None:
    if problem is None:
        return None
    message = _clipped(f"{problem.message}; the content pulled before stays") or ""
    return RefreshProblem(reason=problem.reason, message=message)


@record(frozen=True)
class Identity:
    pod_name: str
    namespace: str
    pod_uid: str | None
    node_name: str | None
    instance: str | None


REPORT_RETRIES = RetryPolicy()
"""A report write refused under load (every agent of a fleet applies at once after a change) is retried here,
for at most a minute, each attempt with the latest status; after that the agent's report writer backs off and
tries again (passes never wait for it)."""


class Reporter:
    def __init__(self, client: Client, identity: Identity, retries: RetryPolicy = REPORT_RETRIES) -> None:
        self._client = client
        self._identity = identity
        self._retries = retries
        self._written: Json | None = None
        self._exists = False

    @property
    def written(self) -> Json | None:
        """The status the report holds (None when there is no report, or it could not be read)."""
        return self._written if self._exists else None

    async def load(self) -> None:
        """Read the report a previous run of this pod left, so an unchanged status is not written again.

        When it cannot be read, the first publish creates it (or finds it there) and writes the status once.
        """
        try:
            existing = await self._client.get_or_none(ARTIFACTREPORTS, self._identity.pod_name,
                                                      self._identity.namespace)  # fmt: skip
        except ApiError as error:
            log.warning("cannot read this pod's ArtifactReport yet: %s", error)
            return
        self._exists = existing is not None
        self._written = (existing or {}).get("status") if existing else None

    async def publish(self, status: Json | Callable[[], Json]) -> bool:
        """Write the status when it differs from what the report holds; True when a write was made.

        ``status`` may be a function giving the latest status: a write refused and retried then sends whatever is
        latest at each attempt, so a change that came meanwhile is not queued behind an outdated one.
        """
        latest = status if callable(status) else (lambda: status)
        if self._exists and latest() == self._written:
            return False
        if not self._exists:
            await self._create()
        sent: list[Json] = []

        async def apply_latest() -> None:
            current = latest()
            sent.append(current)
            # Server-side apply of the whole status: what this agent no longer says (an artifact gone, a field
            # unset) is removed, which a merge patch would leave behind.
            body = {"apiVersion": ARTIFACTREPORTS.api_version, "kind": "ArtifactReport",
                    "metadata": {"name": self._identity.pod_name, "namespace": self._identity.namespace},
                    "status": current}  # fmt: skip
            # The server answers with the whole report, which nothing here reads: it is not decoded.
            await self._client.apply_unread(ARTIFACTREPORTS, body, subresource="status")

        try:
            await with_retries(apply_latest, self._retries, what="ArtifactReport status apply")
        except NotFound:
            self._exists = False  # deleted behind our back: created again on the next change
            raise
        self._written = sent[-1]
        return True

    async def _create(self) -> None:
        identity = self._identity
        metadata: Json = {"name": identity.pod_name, "namespace": identity.namespace}
        if identity.pod_uid:
            metadata["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Pod", "name": identity.pod_name, "uid": identity.pod_uid}
            ]
        spec = {
            key: value for key, value in (("nodeName", identity.node_name), ("instance", identity.instance)) if value
        }
        body = {"apiVersion": ARTIFACTREPORTS.api_version, "kind": "ArtifactReport", "metadata": metadata, "spec": spec}
        # Conflict: already there (a restart that could not read it first); the status patch follows.
        with contextlib.suppress(Conflict):
            await with_retries(lambda: self._client.create(ARTIFACTREPORTS, body), self._retries,
                               what="ArtifactReport create")  # fmt: skip
        self._exists = True
