"""OCI sources of the applicable artifacts: pulled in the background, followed, cached, retried.

Each artifact with an OCI source has one task. It resolves the reference to a digest, takes the file from the disk
cache when that digest was pulled before, else downloads and checks it, and publishes the result (bytes or a
reason); then it sleeps: until ``refreshInterval`` to re-resolve a tag (a moved tag is followed), or, after a
failure, a growing retry delay. A spec change starts a new task; until it has an answer the old bytes stay
visible when only the generation changed, so a priority edit does not blink the artifact. A failure to resolve
again a source that was resolved before (a refresh, such a spec change, or the first pull after a restart, from the
digest the cache remembers) is judged by its reason (``falco_operator.artifacts.oci.failures``): a passing one (the
registry down, a timeout, a 5xx, a 401 or 403) keeps the bytes and their cache entry, and is published apart
(``refresh_problems``), and so does refused new content (a moved tag's layer refused or missing); a definitive one
(the tag deleted, a Secret not for this registry, a refused address) is published as the answer, ``withdrawn`` (the
agent removes the artifact's files) for every artifact of that source, and the cache forgets what the source
resolved to, so that no later restart serves it again. At most ``concurrency`` pulls run at once,
so one slow registry never holds the others back beyond that.

An artifact's OCI config says what it needs (``dependencies``, ``requirements``); an artifact whose config cannot be
read (over 64 KiB, not a JSON object, or its download failed) is not delivered (``ConfigUnreadable``) rather than
delivered without those needs checked. A config that can never be read is remembered by digest (the newest
``MAX_UNREADABLE_CONFIGS``), so retries do not download it again.

The disk cache is pruned after every answer, whatever state the other artifacts are in (one that fails for good
must not let the cache grow with every moved tag). Invariant: after a prune the cache holds, for each followed
artifact, the files of the digest it delivers (also the last good one kept while its refresh fails) and of the
digest its source last resolved to (what a first pull after a restart, still pending or failing, falls back on;
none once a definitive failure withdrew it),
the files of the digest each pull not answered yet resolved to, each such digest's config, the sources'
resolutions, and the temporary files of writes in progress; nothing else.

Credentials come from a Secret read by name at every pull that needs it (never listed or watched): a fixed Secret
works at the next retry, and a Secret that no longer authenticates is noticed at the next refresh, even while the
registry would still take the credentials read before.

The agent imports this module with its first artifact that has an OCI source (``oci_sources.OCISources``, which
runs these pulls in its own task group: ``attach``, ``close``); ``PullSettings`` lives in ``pull_settings.py``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from falco_operator.api.ocirefs import MIN_REFRESH_SECONDS, CredentialsRef, KeylessSource, KeySource, OCILocation
from falco_operator.api.plain import Verification
from falco_operator.artifacts import Artifact, ArtifactKey, Content, Resolution, Unavailable, artifact_key
from falco_operator.artifacts.needs import ArtifactNeeds, artifact_needs
from falco_operator.artifacts.oci.credentials import (
    GRANT_RULE,
    Credentials,
    CredentialsProblem,
    credentials_from_secret,
)
from falco_operator.artifacts.oci.failures import CONFIG_UNREADABLE, PullFailed, withdraws
from falco_operator.artifacts.oci.media import PLUGIN, ArtifactType
from falco_operator.artifacts.oci.signatures import (
    KEY_UNAVAILABLE,
    SIGNATURE_INVALID,
    SIGNATURE_MISSING,
    KeyProblem,
    VerificationKey,
    judge,
    load_key,
    signature_tag,
)
from falco_operator.kube import ApiError, Backoff, Client, Forbidden, NotFound
from falco_operator.kube.resources import CONFIG_MAPS, SECRETS
from falco_operator.records import record
from falco_operator.resources import FALCOS

if TYPE_CHECKING:  # the registry client, httpx and keyless verification (x509) are imported by the first pull
    import httpx

    from falco_operator.artifacts.oci.keyless import KeylessPolicy
    from falco_operator.artifacts.oci.registry import RegistrySession, Resolved

from .metrics import AgentMetrics
from .oci_cache import CONFIG, CacheUse, DigestCache
from .pull_settings import PullSettings, oci_source

log = logging.getLogger("artifact_agent.pulls")
__all__ = ["OCIPulls", "PullRequest", "PullSettings", "pull_request"]
Json = dict[str, Any]
MAX_UNREADABLE_CONFIGS = 256
"""How many digests whose config can never be read are remembered (the newest), each with the reason's message."""


@record(frozen=True)
class PullRequest:
    """What one artifact asks of a registry; a different request means a new pull."""

    type: ArtifactType
    location: OCILocation
    credentials: CredentialsRef | None
    refresh: float | None
    generation: int | None
    verify: KeySource | KeylessSource | None = None
    """The artifact's own verification key (a Falco's ``artifactVerification`` is read at every pull)."""
    policy_generation: int | None = None
    """The generation of the agent's Falco: a new one may change its ``artifactVerification``, so the source is
    pulled (and verified) again, what it delivers kept meanwhile."""

    def same_source(self, other: PullRequest) -> bool:
        def bare(request: PullRequest) -> PullRequest:
            return replace(request, generation=None, refresh=None, policy_generation=None)

        return bare(self) == bare(other)

    @property
    def source(self) -> str:
        """What the pull is of, whatever the generation: the key of its last resolution in the cache."""
        return f"{self.type.label} {self.location!r} {self.credentials!r}"


def pull_request(artifact: Artifact, min_refresh: float = MIN_REFRESH_SECONDS) -> PullRequest | None:
    source = oci_source(artifact)
    if source is None:
        return None
    oci, kind = source
    location = oci.location()
    refresh = oci.refresh_seconds(min_refresh) if location.digest is None else None
    verify = oci.verify.key_source() if oci.verify else None
    return PullRequest(kind, location, oci.credentials(), refresh, artifact.metadata.generation, verify)


@record()
class _Tracked:
    request: PullRequest
    scope: anyio.CancelScope
    result: Resolution
    refresh_problem: Unavailable | None = None
    """Why resolving the source again failed while ``result`` still holds what it resolved to before."""
    signer: str | None = None
    """The fingerprints of the keys that signed ``result``'s digest (None: no signature policy)."""


@record(eq=False)
class _Pulling:
    """A pull whose answer is not published yet, and the digest it resolved to: no tracked result names that
    digest before the answer is published, so this record is what keeps its cached file and config from pruning."""

    label: str
    digest: str | None = None
    signer: str | None = None
    """The fingerprints of the keys whose signatures of ``digest`` were verified (None: no policy)."""


class OCIPulls:
    def __init__(
        self,
        client: Client,
        namespace: str,
        settings: PullSettings,
        metrics: AgentMetrics,
        on_change: Callable[[], None],
        *,
        instance: str | None = None,
    ) -> None:
        self._client = client
        self._instance = instance
        """The agent's Falco, whose ``artifactVerification`` every pull also applies."""
        self._namespace = namespace
        self._settings = settings
        self._metrics = metrics
        self._on_change = on_change
        self._cache = DigestCache(settings.cache_dir)
        self._limiter = anyio.CapacityLimiter(settings.concurrency)
        self._tracked: dict[ArtifactKey, _Tracked] = {}
        self._clients: dict[tuple[bool, str | None], tuple[int | None, httpx.AsyncClient]] = {}
        """By (insecure, the host's CA file): the client, and the version (mtime) of the CA file it trusts."""
        self._retired: list[httpx.AsyncClient] = []
        """Clients of CA files replaced since (a rotated ConfigMap): a pull may still use one; closed at the end."""
        self._resolutions: dict[str, str] = {}
        """The digest each source last resolved to, as remembered in the cache."""
        self._withdrawn: set[str] = set()
        """Sources whose content a definitive failure withdrew (and the cache forgot): every artifact of one is
        withdrawn, also one whose first answer after a restart comes after the cache forgot the source."""
        self._versions: dict[str, str] = {}
        """A plugin artifact's version (its OCI config's), by the digest its reference resolved to."""
        self._needs: dict[str, ArtifactNeeds] = {}
        """What an artifact's OCI config says it needs (dependencies, requirements), by digest."""
        self._configs_read: set[str] = set()
        self._unreadable_configs: dict[str, str] = {}
        """Why the config of a digest can never be read (over the cap, not a JSON object), oldest first: a retry
        fails at once instead of downloading it again."""
        self._unkept_configs: dict[str, bytes] = {}
        """Configs downloaded whose artifact is not in the cache yet, by the artifact's digest."""
        self._pulling: set[_Pulling] = set()
        self._policy: tuple[int, KeySource | KeylessSource | None] | None = None
        """The Falco's ``artifactVerification`` as last read, with the Falco's generation then."""
        self._group: anyio.abc.TaskGroup | None = None
        self._settled = anyio.Event()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            async with anyio.create_task_group() as group:
                self.attach(group)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self.close()

    def attach(self, group: anyio.abc.TaskGroup) -> None:
        """Run the pulls in ``group``, a task group already running (``run`` makes its own); whoever owns it calls
        ``close`` once it has ended."""
        self._group = group

    async def close(self) -> None:
        """Close the registry clients; after the pulls' task group has ended."""
        for http in [client for _, client in self._clients.values()] + self._retired:
            await http.aclose()
        self._clients.clear()
        self._retired.clear()

    # -- what the agent's pass uses -----------------------------------------------------------------------

    def want(self, artifacts: Iterable[Artifact], *, policy_generation: int | None = None) -> None:
        """Start, restart or stop pulls so that exactly these artifacts' OCI sources are followed; a new
        ``policy_generation`` (the agent's Falco's) pulls every source again."""
        floor = self._settings.min_refresh
        wanted = {artifact_key(a): replace(request, policy_generation=policy_generation)
                  for a in artifacts if (request := pull_request(a, floor)) is not None}  # fmt: skip
        stopped = set(self._tracked) - set(wanted)
        for key in stopped:
            self._tracked.pop(key).scope.cancel()
        for key, request in sorted(wanted.items()):
            tracked = self._tracked.get(key)
            if tracked is not None and tracked.request == request:
                continue
            keep = tracked is not None and tracked.request.same_source(request) and isinstance(tracked.result, Content)
            result = tracked.result if tracked is not None and keep else _pending(request)
            if tracked is not None:
                tracked.scope.cancel()
            self._start(key, request, result, tracked.signer if tracked is not None and keep else None)
        if stopped:  # no pull of theirs will answer and prune: what only they used goes now
            self._keep_cached()

    def resolve(self, key: ArtifactKey) -> Resolution | None:
        tracked = self._tracked.get(key)
        return tracked.result if tracked is not None else None

    def refresh_problems(self) -> dict[ArtifactKey, Unavailable]:
        """Artifacts whose source could not be resolved again (a refresh, or a new generation of the same
        source): what was pulled before stays delivered, and this says why it may be stale."""
        return {key: tracked.refresh_problem for key, tracked in self._tracked.items() if tracked.refresh_problem}

    def artifact_needs(self) -> dict[str, ArtifactNeeds]:
        """What each pulled artifact's OCI config says it needs (falcoctl's dependencies and requirements), by the
        digest delivered; artifacts whose config states nothing are left out."""
        return dict(self._needs)

    def plugin_versions(self) -> dict[str, str]:
        """The version of each plugin pulled, as its OCI config says, by the digest delivered (the agent checks it
        against the version Falco runs)."""
        return dict(self._versions)

    def signers(self) -> dict[ArtifactKey, tuple[str, str]]:
        """For each artifact whose content was verified: its digest, and the fingerprints of the keys whose cosign
        signatures that digest carried (artifacts of one digest may be held to different keys)."""
        signed: dict[ArtifactKey, tuple[str, str]] = {}
        for key, tracked in self._tracked.items():
            if tracked.signer and isinstance(tracked.result, Content) and tracked.result.digest:
                signed[key] = (tracked.result.digest, tracked.signer)
        return signed

    def settled(self) -> bool:
        """Every followed artifact has had a first answer (bytes or a failure)."""
        return not any(_is_pending(tracked.result) for tracked in self._tracked.values())

    async def wait_settled(self) -> None:
        while not self.settled():
            self._settled = anyio.Event()
            await self._settled.wait()

    # -- one artifact ---------------------------------------------------------------------------------------

    def _start(self, key: ArtifactKey, request: PullRequest, result: Resolution, signer: str | None = None) -> None:
        assert self._group is not None, "run() first"
        scope = anyio.CancelScope()
        self._tracked[key] = _Tracked(request, scope, result, signer=signer)
        self._group.start_soon(self._follow, key, request, scope)

    async def _follow(self, key: ArtifactKey, request: PullRequest, scope: anyio.CancelScope) -> None:
        backoff = Backoff(initial=self._settings.retry_initial, cap=self._settings.retry_max)
        with scope:
            while True:
                pulling = _Pulling(request.type.label)
                self._pulling.add(pulling)
                try:
                    result = await self._pull(request, pulling)
                    tracked = self._tracked.get(key)
                    if tracked is None or tracked.scope is not scope:
                        return
                    problem: Unavailable | None = None
                    if isinstance(result, Unavailable):
                        result, problem = await self._failed(request, tracked.result, result)
                    else:
                        tracked.signer = pulling.signer
                    if (result, problem) != (tracked.result, tracked.refresh_problem):
                        tracked.result, tracked.refresh_problem = result, problem
                        self._on_change()
                finally:
                    self._pulling.discard(pulling)
                self._keep_cached()
                self._settled.set()
                if isinstance(result, Content) and problem is None:
                    backoff.reset()
                    if request.refresh is None:
                        return
                    await anyio.sleep(request.refresh)
                else:
                    await anyio.sleep(backoff.next_delay())

    async def _failed(
        self, request: PullRequest, before: Resolution, failure: Unavailable
    ) -> tuple[Resolution, Unavailable | None]:
        """What a failed pull publishes, and the refresh problem beside it. A source resolved before (what it
        delivers now, or, at the first answer after a restart, the digest the cache remembers) keeps that content
        through a passing failure (the problem is reported apart) and loses it at a definitive one; once withdrawn,
        it stays so, whatever the next failures, until it resolves again (for every artifact of that source)."""
        if (isinstance(before, Unavailable) and before.withdrawn) or request.source in self._withdrawn:
            return replace(failure, withdrawn=True), None
        if withdraws(failure.reason):
            # Re-checked after the await: another artifact of this source may have withdrawn it (and had the cache
            # forget it) meanwhile.
            resolved_before = isinstance(before, Content) or await self._remembered(request) is not None
            if resolved_before or request.source in self._withdrawn:
                log.warning("%s refuses what it resolved to before (%s): it is withdrawn", request.location.reference,
                            failure.reason)  # fmt: skip
                self._withdrawn.add(request.source)
                await self._forget(request)
                return replace(failure, withdrawn=True), None
            return failure, None
        if not isinstance(before, Content):
            # The first answer since the agent started: what this source resolved to before the restart is still
            # delivered (the files on disk are its), as after a failed refresh.
            before = await self._resolved_before(request) or before
        if isinstance(before, Content):
            return before, failure
        return failure, None

    async def _pull(self, request: PullRequest, pulling: _Pulling) -> Resolution:
        reference = request.location.reference
        async with self._limiter:
            started = time.monotonic()
            outcome = "failure"
            try:
                with anyio.fail_after(self._settings.pull_deadline):
                    content, outcome = await self._pull_authenticated(request, pulling)
                return content
            except TimeoutError:
                message = f"pulling {reference} took longer than {self._settings.pull_deadline:g} s"
                return Unavailable("Failed", "Timeout", message)
            except PullFailed as failed:
                log.warning("pull of %s failed: %s", reference, failed.message, extra={"reason": failed.reason})
                return Unavailable("Failed", failed.reason, failed.message)
            except Exception as error:  # one artifact's unforeseen failure must not stop the agent
                log.exception("pull of %s failed unexpectedly", reference)
                return Unavailable("Failed", "PullError", f"pulling {reference} failed: {error}")
            finally:
                self._metrics.pulls.labels(outcome).inc()
                self._metrics.pull_duration.observe(time.monotonic() - started)

    async def _pull_authenticated(self, request: PullRequest, pulling: _Pulling) -> tuple[Content, str]:
        # The Secret is read at every pull (every refresh): a password changed to a wrong one is noticed at the
        # next refresh, not when the credentials read before stop working.
        credentials = await self._credentials(request)
        try:
            return await self._pull_with(request, credentials, pulling)
        except PullFailed as failed:
            if failed.reason != "Unauthorized" or request.credentials is None or isinstance(failed, _NoHostServes):
                raise
            name, registry = request.credentials.secret_name, request.location.registry
            message = f"{failed.message}: Secret {name} does not authenticate to {registry}; check its credentials"
            raise PullFailed("Unauthorized", message) from None

    async def _pull_with(
        self, request: PullRequest, credentials: Credentials | None, pulling: _Pulling
    ) -> tuple[Content, str]:
        location = request.location
        session, resolved = await self._resolve(request, credentials)
        pulling.digest = resolved.digest
        # Before anything of this digest is read or served, cache included: the manifest verified is the one
        # whose config and layer are then fetched by the digests it lists.
        pulling.signer = await self._verify(session, request, resolved.digest)
        if resolved.digest not in self._configs_read:
            await self._read_config(session, resolved, request.type == PLUGIN)
        cached = await self._cached(resolved.digest, request.type.label)
        if cached is not None:
            await self._keep_config(resolved.digest)
            await self._remember(request, resolved.digest)
            return Content(cached, resolved.digest), "cached"
        with self._cache.spool() as spool:
            pulled = await session.fetch(resolved, request.type, self._settings.max_bytes(request.type), spool)
        self._metrics.pull_bytes.inc(pulled.downloaded)
        try:
            await anyio.to_thread.run_sync(self._cache.put, pulled.digest, request.type.label, pulled.file.data)
        except OSError as error:  # the cache saves downloads; the pulled bytes are good without it
            log.warning("cannot cache %s: %s", pulled.digest, error)
        await self._keep_config(resolved.digest)
        await self._remember(request, pulled.digest)
        log.info("pulled %s", location.reference, extra={"digest": pulled.digest, "bytes": pulled.downloaded})
        return Content(pulled.file.data, pulled.digest), "success"

    async def _resolve(self, request: PullRequest, credentials: Credentials | None) -> tuple[RegistrySession, Resolved]:
        """Resolve the reference at the first host that answers: its mirrors in order, then the host itself unless
        mirrors-only. A mirror gets the credentials only when its entry says so. The rest of the pull (config,
        layer) asks the same host."""
        from falco_operator.artifacts.oci.registry import RegistrySession

        endpoints = self._settings.hosts.endpoints(request.location)
        failures: list[tuple[str, PullFailed]] = []
        for endpoint in endpoints:
            location = endpoint.location
            try:
                sent = credentials if endpoint.send_credentials else None
                session = RegistrySession(self._http(location), location, sent)
                return session, await session.resolve(request.type, self._settings.architecture)
            except PullFailed as failed:
                if len(endpoints) == 1:
                    raise
                log.info("%s: %s failed (%s), trying the next host", request.location.reference, location.registry,
                         failed.reason)  # fmt: skip
                if failed.reason == "Unauthorized" and credentials is not None and not endpoint.send_credentials:
                    failed = PullFailed(failed.reason, f"{failed.message} (the artifact's credentials are for "
                                        f"{request.location.registry}: its spec.registries entry sends them to mirrors "
                                        "only with credentialsToMirrors)")  # fmt: skip
                failures.append((location.registry, failed))
        last = failures[-1][1]
        tried = "; ".join(f"{host}: {failed.message}" for host, failed in failures)
        raise _NoHostServes(last.reason, f"no host serves {request.location.reference} (tried in order: {tried})")

    async def _remember(self, request: PullRequest, digest: str) -> None:
        self._withdrawn.discard(request.source)
        if self._resolutions.get(request.source) == digest:
            return
        try:
            await anyio.to_thread.run_sync(self._cache.remember, request.source, digest)
            self._resolutions[request.source] = digest
        except OSError as error:
            log.warning("cannot remember what %s resolved to: %s", request.location.reference, error)

    async def _remembered(self, request: PullRequest) -> str | None:
        """The digest this source last resolved to, as the cache remembers it; None when unknown."""
        digest = self._resolutions.get(request.source)
        if digest is not None:
            return digest
        try:
            return await anyio.to_thread.run_sync(self._cache.resolved, request.source)
        except OSError:
            return None

    async def _forget(self, request: PullRequest) -> None:
        """The source refused what it resolved to: the cache no longer offers it to a restart (and prunes it)."""
        self._resolutions.pop(request.source, None)
        try:
            await anyio.to_thread.run_sync(self._cache.forget, request.source)
        except OSError as error:
            log.warning("cannot forget what %s resolved to: %s", request.location.reference, error)

    async def _resolved_before(self, request: PullRequest) -> Content | None:
        """The content this source resolved to before the agent started, from the cache, its config read from there
        too; None when unknown (or its config is not cached: what it needs would be unknown)."""
        digest = await self._remembered(request)
        data = await self._cached(digest, request.type.label) if digest else None
        if digest is None or data is None:
            return None
        if digest not in self._configs_read and not await self._config_from_cache(digest, request.type == PLUGIN):
            return None
        self._resolutions[request.source] = digest
        return Content(data, digest)

    async def _read_config(self, session: RegistrySession, resolved: Resolved, plugin: bool) -> None:
        """Remember what the artifact's OCI config says (small; once per digest, and from the cache when a pull
        before this restart kept it): a plugin's version, and what the artifact needs. A manifest without a config
        of the kind's type states nothing; a config that cannot be read fails the pull (``ConfigUnreadable``): the
        artifact is not delivered with needs unknown. A config downloaded is cached with its artifact
        (``_keep_config``), never alone: a refused artifact leaves nothing in the cache."""
        digest = resolved.digest
        verdict = self._unreadable_configs.get(digest)
        if verdict is not None:
            raise PullFailed(CONFIG_UNREADABLE, verdict)
        if await self._config_from_cache(digest, plugin):
            return
        try:
            config = await session.artifact_config(resolved)
        except PullFailed as failed:
            if failed.reason == CONFIG_UNREADABLE:  # for good: the manifest's digest pins the config
                message = _not_delivered(failed.message)
                self._unreadable_configs.pop(digest, None)
                self._unreadable_configs[digest] = message
                while len(self._unreadable_configs) > MAX_UNREADABLE_CONFIGS:
                    del self._unreadable_configs[next(iter(self._unreadable_configs))]
                raise PullFailed(CONFIG_UNREADABLE, message) from None
            cause = f"the config of {session.reference} cannot be downloaded ({failed.reason}: {failed.message})"
            raise PullFailed(CONFIG_UNREADABLE, _not_delivered(cause)) from None
        self._unkept_configs[digest] = json.dumps(config).encode()
        self._note_config(digest, config, plugin)

    async def _config_from_cache(self, digest: str, plugin: bool) -> bool:
        """Take what the cached config of ``digest`` says; False when the cache has no readable one."""
        kept = await self._cached(digest, CONFIG)
        if kept is None:
            return False
        try:
            config = json.loads(kept)  # as _keep_config wrote it: a JSON object, or null (no config)
        except ValueError:
            return False
        if config is not None and not isinstance(config, dict):
            return False
        self._note_config(digest, config, plugin)
        return True

    def _note_config(self, digest: str, config: Json | None, plugin: bool) -> None:
        self._configs_read.add(digest)
        version = (config or {}).get("version")
        if plugin and isinstance(version, str) and version:
            self._versions[digest] = version
        needs = artifact_needs(config)
        if not needs.empty:
            self._needs[digest] = needs

    async def _keep_config(self, digest: str) -> None:
        """Cache the config read for an artifact now cached too, so a restart reads it from there."""
        config = self._unkept_configs.pop(digest, None)
        if config is None:
            return
        try:
            await anyio.to_thread.run_sync(self._cache.put, digest, CONFIG, config)
        except OSError as error:  # the cache saves downloads; the config read is good without it
            log.warning("cannot cache the config of %s: %s", digest, error)

    async def _cached(self, digest: str, label: str) -> bytes | None:
        try:
            return await anyio.to_thread.run_sync(self._cache.get, digest, label)
        except OSError as error:
            log.warning("cannot read the cached %s: %s", digest, error)
            return None

    # -- signatures ----------------------------------------------------------------------------------------

    async def _verify(self, session: RegistrySession, request: PullRequest, digest: str) -> str | None:
        """Hold ``digest`` to every verification policy that applies (the artifact's ``verify`` and the Falco's
        ``artifactVerification``: each key must have signed it); raise ``SignatureMissing``/``SignatureInvalid``. The
        fingerprints of the keys, or None when no policy applies."""
        policy = await self._falco_policy(request.policy_generation)
        sources = list(dict.fromkeys(source for source in (request.verify, policy) if source is not None))
        if not sources:
            return None
        keys = [await self._verification_key(source) for source in sources]
        signers: list[str] = []
        tagged, bundled = await session.signatures(digest), await session.bundle_signatures(digest)
        if tagged is None and bundled is None:
            raise PullFailed(SIGNATURE_MISSING, f"{session.reference} resolves to {digest}, which has no cosign "
                             f"signature (no tag {signature_tag(digest)}, no Sigstore bundle referring to it, in "
                             f"{request.location.registry}/{request.location.repository}): it is not "
                             "delivered")  # fmt: skip
        signed = [*(tagged or []), *(bundled or [])]
        from falco_operator.artifacts.oci.keyless import KeylessPolicy, judge_keyless

        for key in keys:
            if isinstance(key, KeylessPolicy):
                signer, reason, message = judge_keyless(digest, session.reference, signed, key)
                if signer is None:
                    raise PullFailed(reason, message)
                signers.append(signer)
                continue
            verified, why = judge(digest, session.reference, signed, key)
            if not verified:
                raise PullFailed(SIGNATURE_INVALID, why)
            signers.append(key.fingerprint)
        return ", ".join(signers)

    async def _falco_policy(self, generation: int | None) -> KeySource | KeylessSource | None:
        """The Falco's ``artifactVerification``, read once per generation of the Falco (the agent's watch of its
        Falco gives the generation; a pull that does not know it reads the Falco)."""
        if self._instance is None:
            return None
        known = self._policy
        if generation is not None and known is not None and known[0] == generation:
            return known[1]
        try:
            falco = await self._client.get(FALCOS, self._instance, self._namespace)
        except NotFound:
            return None  # no Falco, no pods to serve: nothing to hold the pull to
        except ApiError as error:
            raise PullFailed(
                "PolicyUnreadable",
                f"cannot read Falco {self._instance} for its "
                f"artifactVerification ({error}); nothing is delivered until it can be read",
            ) from None
        raw = (falco.get("spec") or {}).get("artifactVerification")
        try:
            policy = Verification.from_wire(raw).key_source() if raw else None
        except ValueError as error:
            raise PullFailed(
                "PolicyUnreadable", f"Falco {self._instance}'s artifactVerification cannot be read: {error}"
            ) from None
        read_generation = (falco.get("metadata") or {}).get("generation")
        if isinstance(read_generation, int):
            self._policy = (read_generation, policy)
        return policy

    async def _verification_key(self, source: KeySource | KeylessSource) -> VerificationKey | KeylessPolicy:
        if isinstance(source, KeylessSource):
            return await self._keyless_policy(source)
        resource = CONFIG_MAPS if source.kind == "ConfigMap" else SECRETS
        try:
            obj = await self._client.get(resource, source.name, self._namespace)
        except Forbidden:
            grant = "" if source.kind == "ConfigMap" else f" ({GRANT_RULE})"
            raise PullFailed(KEY_UNAVAILABLE, f"the agent may not read the verification key {source}{grant}; "
                             "nothing is delivered until it can") from None  # fmt: skip
        except NotFound:
            raise PullFailed(KEY_UNAVAILABLE, f"the verification key {source} does not exist in {self._namespace}; "
                             "nothing is delivered until it does") from None  # fmt: skip
        pem = _key_bytes(obj, source)
        if pem is None:
            raise PullFailed(KEY_UNAVAILABLE, f"the verification key {source} has no such key holding a PEM public "
                             "key; nothing is delivered until it does")  # fmt: skip
        try:
            return load_key(pem, str(source))
        except KeyProblem as problem:
            raise PullFailed(KEY_UNAVAILABLE, f"{problem}; nothing is delivered until it holds a cosign public "
                             "key") from None  # fmt: skip

    async def _keyless_policy(self, source: KeylessSource) -> KeylessPolicy:
        from falco_operator.artifacts.oci.keyless import (
            KeylessPolicy,
            TrustedRootProblem,
            identity_pattern_error,
            load_trusted_root,
        )

        if source.identity_regexp is not None:
            problem = identity_pattern_error(source.identity_regexp)
            if problem is not None:
                raise PullFailed(KEY_UNAVAILABLE, f"identityRegexp {source.identity_regexp!r} is not an RE2 "
                                 f"regular expression ({problem}); nothing is delivered until it is")  # fmt: skip
        try:
            obj = await self._client.get(CONFIG_MAPS, source.name, self._namespace)
        except Forbidden:
            raise PullFailed(KEY_UNAVAILABLE, f"the agent may not read the trusted root {source}; nothing is "
                             "delivered until it can") from None  # fmt: skip
        except NotFound:
            raise PullFailed(KEY_UNAVAILABLE, f"the trusted root {source} does not exist in {self._namespace}; "
                             "nothing is delivered until it does") from None  # fmt: skip
        document = _key_bytes(obj, KeySource("ConfigMap", source.name, source.key))
        if document is None:
            raise PullFailed(KEY_UNAVAILABLE, f"the trusted root {source} has no such key; nothing is delivered "
                             "until it does")  # fmt: skip
        try:
            root = load_trusted_root(document, str(source))
        except TrustedRootProblem as problem:
            raise PullFailed(KEY_UNAVAILABLE, f"{problem}; nothing is delivered until it holds a Sigstore trusted "
                             "root") from None  # fmt: skip
        return KeylessPolicy(source, root)

    # -- credentials ---------------------------------------------------------------------------------------

    async def _credentials(self, request: PullRequest) -> Credentials | None:
        ref = request.credentials
        if ref is None:
            return None
        secret = await self._read_secret(ref.secret_name)
        try:
            return credentials_from_secret(secret, request.location.registry, ref.username_key, ref.password_key)
        except CredentialsProblem as problem:
            raise PullFailed(problem.reason, str(problem)) from None

    async def _read_secret(self, name: str) -> dict[str, Any]:
        try:
            return await self._client.get(SECRETS, name, self._namespace)
        except Forbidden:
            raise PullFailed(
                "SecretNotGranted",
                f"the agent may not read Secret {name}: {GRANT_RULE}, and grants it to agents of the Falco "
                "instances the artifact applies to",
            ) from None
        except NotFound:
            raise PullFailed("SecretNotFound", f"Secret {name} does not exist in {self._namespace}") from None

    # -- shared resources ----------------------------------------------------------------------------------

    def _http(self, location: OCILocation) -> httpx.AsyncClient:
        """A client for this host: one per host CA file (it trusts that CA for its host only), made again when the
        file changes (the ConfigMap rotated)."""
        insecure = location.insecure_skip_verify
        ca_file = None if insecure else self._settings.hosts.ca_file(location.registry)
        version: int | None = None
        if ca_file is not None:
            try:
                version = os.stat(ca_file).st_mtime_ns
            except OSError:
                raise PullFailed("RegistryCAUnusable", f"the CA bundle for {location.registry} ({ca_file}) is "
                                 "missing: check the ConfigMap and key its entry in the Falco's spec.registries "
                                 "names") from None  # fmt: skip
        key = (insecure, ca_file)
        known = self._clients.get(key)
        if known is not None and known[0] == version:
            return known[1]
        from falco_operator.artifacts.oci.registry import http_client

        try:
            client = http_client(timeout=self._settings.request_timeout, insecure=insecure,
                                 extra_ca=self._settings.extra_ca, allow_private=self._settings.allow_private,
                                 host_ca=ca_file)  # fmt: skip
        except (OSError, ssl.SSLError) as error:
            raise PullFailed("RegistryCAUnusable", f"the CA bundle for {location.registry} ({ca_file}) holds no "
                             f"usable PEM certificate: {error}") from None  # fmt: skip
        if known is not None:
            self._retired.append(known[1])
        self._clients[key] = (version, client)
        return client

    def _keep_cached(self) -> None:
        """Prune the cache to what is referenced (the invariant in the module's docstring), whatever state the
        artifacts are in; and forget what was read of the configs of digests no longer referenced."""
        uses = [CacheUse(pulling.label, frozenset({pulling.digest})) for pulling in self._pulling if pulling.digest]
        try:
            for tracked in self._tracked.values():
                source = tracked.request.source
                digests = {self._resolutions.get(source) or self._cache.resolved(source)}
                if isinstance(tracked.result, Content):
                    digests.add(tracked.result.digest)
                uses.append(CacheUse(tracked.request.type.label, frozenset(d for d in digests if d), source))
            self._cache.prune(uses)
        except OSError as error:
            log.warning("cannot prune the OCI cache: %s", error)
            return
        used = {digest for use in uses for digest in use.digests}
        # What was read of a config is read again if its digest comes back (a Plugin moved back to a tag it had):
        # its cached config was pruned with it. A config read for an artifact never cached (its layer refused) goes
        # too: a retry reads it again rather than every moved tag's config staying in memory.
        self._configs_read &= used
        self._unkept_configs = {digest: config for digest, config in self._unkept_configs.items() if digest in used}
        self._versions = {digest: version for digest, version in self._versions.items() if digest in used}
        self._needs = {digest: needs for digest, needs in self._needs.items() if digest in used}
        sources = {use.source for use in uses}
        # A source no longer followed lost its resolution on disk: it must be written again if it comes back.
        self._resolutions = {source: d for source, d in self._resolutions.items() if source in sources}
        self._withdrawn &= sources


def _key_bytes(obj: Json, source: KeySource) -> bytes | None:
    """The bytes of the key's entry: a Secret's ``data`` and a ConfigMap's ``binaryData`` are base64, a
    ConfigMap's ``data`` is text."""
    text = (obj.get("data") or {}).get(source.key)
    encoded = text if source.kind == "Secret" else (obj.get("binaryData") or {}).get(source.key)
    if isinstance(encoded, str):
        try:
            return base64.b64decode(encoded, validate=True)
        except ValueError:
            return None
    return text.encode() if isinstance(text, str) and source.kind == "ConfigMap" else None


class _NoHostServes(PullFailed):
    """Every host of a mirrored reference failed: the reason is the last host's, the message says each one's."""


def _not_delivered(cause: str) -> str:
    return f"{cause}: the dependencies and requirements it declares cannot be checked, so it is not delivered"


def _pending(request: PullRequest) -> Unavailable:
    return Unavailable("Pending", "Pulling", f"pulling {request.location.reference}")


def _is_pending(result: Resolution) -> bool:
    return isinstance(result, Unavailable) and result.state == "Pending"
