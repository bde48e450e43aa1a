"""The Falco reconciler: read from the caches, build the desired objects, apply what differs, write status."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from ..api import Falco
from ..artifacts.oci import grantable
from ..kube import (
    ApiError,
    Applier,
    Cache,
    Client,
    EventRecorder,
    Forbidden,
    Request,
    Resource,
    Result,
    TerminalError,
)
from ..kube.conditions import utc_now
from ..kube.resources import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    CONFIG_MAPS,
    DAEMON_SETS,
    DEPLOYMENTS,
    ROLE_BINDINGS,
    ROLES,
    SECRETS,
    SERVICE_ACCOUNTS,
    SERVICES,
)
from ..resources import CONFIGS, FALCOS, PLUGINS, RULESFILES
from ..wiring.reconcile import ComponentWiring
from ..wiring.render import CASource
from .naming import cluster_object_name
from .options import LEGACY_FINALIZER, BuildOptions
from .podtemplate import status_version
from .rbac import (
    References,
    artifact_references,
    build_cluster_role,
    build_cluster_role_binding,
    build_role,
    build_role_binding,
    build_service_account,
)
from .servicemonitor import (
    NOT_SERVED,
    SERVICE_MONITORS,
    build_service_monitor,
    monitor_condition,
    wants_service_monitor,
)
from .services import build_extra_services, removable_services
from .status import (
    PROGRESS_DEADLINE,
    artifact_summary,
    counts_hold,
    desired_status,
    programmed_dropped,
    report_transitions,
    rollout_age,
    status_patch,
    unreadable_status,
)
from .workload import build_configmap, build_service, build_workload

Json = dict[str, Any]
log = logging.getLogger("falco_operator.instance")
SECRET_RECHECK = 30.0
"""Seconds before a Falco whose artifacts name a Secret not granted to agents is looked at again."""


def controlled_by(obj: Json, uid: str) -> bool:
    return any(ref.get("uid") == uid and ref.get("controller") for ref in obj["metadata"].get("ownerReferences") or [])


def desired_objects(
    falco: Falco, raw: Json, options: BuildOptions, references: References, k8smeta_ca: CASource | None = None
) -> list[tuple[Resource, Json]]:
    """Everything one Falco needs, in the order it is applied (identity and RBAC before the pods that use them)."""
    workload = build_workload(falco, raw, options, k8smeta_ca)
    return [
        (SERVICE_ACCOUNTS, build_service_account(falco, raw, options)),
        (ROLES, build_role(falco, raw, options, references)),
        (ROLE_BINDINGS, build_role_binding(falco, raw, options)),
        (CLUSTER_ROLES, build_cluster_role(falco, options)),
        (CLUSTER_ROLE_BINDINGS, build_cluster_role_binding(falco, options)),
        (CONFIG_MAPS, build_configmap(falco, raw, options)),
        (SERVICES, build_service(falco, raw, options)),
        *((SERVICES, service) for service in build_extra_services(falco, raw, options)),
        (DAEMON_SETS if workload["kind"] == "DaemonSet" else DEPLOYMENTS, workload),
    ]


def permanent(error: ApiError) -> bool:
    """A refusal that retrying the same request cannot fix: a 4xx other than 404, 409 (conflict) and 429."""
    return 400 <= error.status < 500 and error.status not in (404, 409, 429)


def namespace_terminating(error: ApiError) -> bool:
    """The API server refused because the namespace is being deleted (its status cause, not its wording)."""
    details = (error.body or {}).get("details") if isinstance(error.body, dict) else None
    causes = (details or {}).get("causes") or []
    return any(cause.get("reason") == "NamespaceTerminating" for cause in causes if isinstance(cause, dict))


class FalcoReconciler:
    def __init__(
        self,
        client: Client,
        cache: Cache,
        options: BuildOptions,
        events: EventRecorder,
        clock: Callable[[], str] = utc_now,
        service_monitors_served: Callable[[], bool] = lambda: False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.monotonic = monotonic
        self._counts_since: dict[Request, float] = {}
        """When each Falco's unwritten ``status.artifacts`` difference was first seen (``ARTIFACT_COUNTS_HOLD``)."""
        self.cache = cache
        self.options = options
        self.events = events
        self.applier = Applier(client)
        self.clock = clock
        self.service_monitors_served = service_monitors_served
        """Whether the cluster serves ServiceMonitors now (the setup reads the CRD from a cache)."""
        self.wiring = ComponentWiring(client, cache, self.applier)
        """The artifacts that wire a Falco to the Components it names."""

    async def reconcile(self, request: Request) -> Result | None:
        raw = self.cache.get(FALCOS, request.name, request.namespace)
        if raw is None:
            # Namespaced objects go by garbage collection; the two cluster-scoped ones are removed here (and at
            # start, for Falcos deleted while no operator ran), or a later ServiceAccount of the same name would
            # inherit the binding. No finalizer: nothing can leave a Falco, its namespace or the CRD stuck.
            await self._remove_cluster_objects(request)
            self._counts_since.pop(request, None)
            return None
        if raw["metadata"].get("deletionTimestamp"):
            await self._on_deletion(raw)  # needs metadata only: a spec these models cannot read never blocks deletion
            return None
        try:
            falco = Falco.model_validate(raw)
        except ValidationError as invalid:
            await self._report_unreadable(raw, invalid)
            raise TerminalError(f"cannot read Falco {request}: {invalid}") from invalid
        raw = await self._drop_legacy_finalizer(raw)
        namespace = request.namespace
        artifacts = [obj for kind in (RULESFILES, PLUGINS, CONFIGS) for obj in self.cache.in_namespace(kind, namespace)]
        references, withheld = await self._grantable(artifact_references(falco, artifacts), namespace)
        try:
            error, workload = await self._apply_all(falco, raw, references)
            await self._remove_unlisted_services(falco, raw)
            monitor = await self._reconcile_service_monitor(falco, raw)
            wired = await self.wiring.reconcile(falco, raw)
        except Forbidden as forbidden:
            if namespace_terminating(forbidden):
                # The namespace is going away and the Falco with it: recreating its objects would only churn.
                log.info("namespace %s is terminating; not applying", namespace)
                return None
            raise
        kind = falco.spec.workload_type
        await self._remove_other_workload(raw, kind)
        summary = artifact_summary(falco.metadata.name or "", falco.metadata.labels or {}, artifacts,
                                   falco.spec.loads_image_defaults)  # fmt: skip
        extra = [condition for condition in (monitor, wired) if condition]
        status, held = await self._write_status(request, falco, raw, kind, workload, error, summary, extra)
        delays = [held] if held is not None else []
        if any(c["type"] == "Available" and c["reason"] == "RollingOut" for c in status["conditions"]):
            # Look again when the rollout's deadline passes, even if nothing else happens by then.
            delays.append(max(1.0, PROGRESS_DEADLINE - rollout_age(status["conditions"], self.clock()) + 1.0))
        if withheld:
            # A withheld Secret may be created or labelled later, and Secrets are not watched: look again soon.
            delays.append(SECRET_RECHECK)
        return Result(requeue_after=min(delays)) if delays else None

    async def _grantable(self, references: References, namespace: str) -> tuple[References, tuple[str, ...]]:
        """The references with only the Secrets agents may be given (``grantable``), and the names withheld.

        Each named Secret is read by name (never listed): its type and labels decide. A missing one is withheld
        too, so a later Secret of that name is not readable before it is judged.
        """
        granted: list[str] = []
        withheld: list[str] = []
        for name in references.secrets:
            secret = await self.client.get_or_none(SECRETS, name, namespace)
            (granted if secret is not None and grantable(secret) else withheld).append(name)
        if withheld:
            log.info("not granting Secrets to agents", extra={"namespace": namespace, "secrets": withheld})
        return replace(references, secrets=tuple(granted)), tuple(withheld)

    async def _apply_all(self, falco: Falco, raw: Json, references: References) -> tuple[str | None, Json | None]:
        uid = raw["metadata"]["uid"]
        workload: Json | None = None
        k8smeta_ca = self.wiring.metacollector_ca(falco)
        for resource, desired in desired_objects(falco, raw, self.options, references, k8smeta_ca):
            name, namespace = desired["metadata"]["name"], desired["metadata"].get("namespace")
            live = self.cache.get(resource, name, namespace)
            if live is None and resource.namespaced:
                # The caches hold only labelled objects: look for one of the same name that is someone else's.
                # Always from the live object: having applied this name once (perhaps for a Falco deleted since)
                # says nothing about who owns what is there now.
                live = await self.client.get_or_none(resource, name, namespace)
            if live is not None and resource.namespaced and not controlled_by(live, uid):
                return f"{resource.kind} {name} already exists and is not owned by this Falco; rename one of them", None
            try:
                applied = await self.applier.apply(resource, desired, live)
            except ApiError as refused:
                if not permanent(refused) or namespace_terminating(refused):
                    raise
                return f"the API server refused the {resource.kind} {name} ({refused.status}): {refused.message}", None
            if resource in (DAEMON_SETS, DEPLOYMENTS):
                workload = applied or live
        return None, workload

    async def _remove_unlisted_services(self, falco: Falco, raw: Json) -> None:
        """Delete the extra Services this Falco made that ``spec.services`` no longer lists (only those)."""
        metadata = raw["metadata"]
        name = metadata["name"]
        wanted = {entry.service_name(name) for entry in falco.spec.services or []}
        live = self.cache.in_namespace(SERVICES, metadata["namespace"])
        for service in removable_services(live, name, metadata["uid"], wanted):
            service_name = service["metadata"]["name"]
            log.info("deleting Service %s: spec.services no longer lists it", service_name)
            await self.client.delete(SERVICES, service_name, metadata["namespace"], uid=service["metadata"]["uid"])
            self.applier.forget(SERVICES, metadata["namespace"], service_name)

    async def _reconcile_service_monitor(self, falco: Falco, raw: Json) -> Json | None:
        """Apply or delete the ServiceMonitor; the ``ServiceMonitor`` condition, None when none is wanted.

        ServiceMonitors are not cached (their informer could not start before the kind is served): while the kind
        is served, one uncached read per reconcile says what is there.
        """
        metadata = raw["metadata"]
        name, namespace, uid = metadata["name"], metadata["namespace"], metadata["uid"]
        generation = int(metadata.get("generation") or 0)
        wanted = wants_service_monitor(falco)
        if not self.service_monitors_served():
            self.applier.forget(SERVICE_MONITORS, namespace, name)
            return monitor_condition(False, "CRDNotServed", NOT_SERVED, generation) if wanted else None
        live = await self.client.get_or_none(SERVICE_MONITORS, name, namespace)
        if not wanted:
            if live is not None and controlled_by(live, uid):
                log.info("deleting ServiceMonitor %s: spec.monitoring.serviceMonitor is unset", name)
                await self.client.delete(SERVICE_MONITORS, name, namespace, uid=live["metadata"]["uid"])
            self.applier.forget(SERVICE_MONITORS, namespace, name)
            return None
        if live is not None and not controlled_by(live, uid):
            message = f"ServiceMonitor {name} already exists and is not owned by this Falco; rename one of them"
            return monitor_condition(False, "NotOwned", message, generation)
        try:
            await self.applier.apply(SERVICE_MONITORS, build_service_monitor(falco, raw, self.options), live)
        except ApiError as refused:
            if not permanent(refused) or namespace_terminating(refused):
                raise
            message = f"the API server refused the ServiceMonitor {name} ({refused.status}): {refused.message}"
            return monitor_condition(False, "ApplyFailed", message, generation)
        message = f"ServiceMonitor {name} scrapes /metrics on the web port of the Service {name}"
        return monitor_condition(True, "Created", message, generation)

    async def _report_unreadable(self, raw: Json, invalid: ValidationError) -> None:
        message = f"the operator cannot read this Falco: {invalid}"[:2000]
        generation = int(raw["metadata"].get("generation") or 0)
        old = raw.get("status") or {}
        status = unreadable_status(old, message, generation, self.clock())
        if status != old:
            await self.client.patch_status(FALCOS, raw["metadata"]["name"], status, raw["metadata"]["namespace"])
            await self.events.emit(raw, "Warning", "InvalidSpec", message)

    async def _remove_other_workload(self, raw: Json, kind: str) -> None:
        other = DEPLOYMENTS if kind == "DaemonSet" else DAEMON_SETS
        metadata = raw["metadata"]
        live = self.cache.get(other, metadata["name"], metadata["namespace"])
        if live is not None and controlled_by(live, metadata["uid"]):
            log.info("type is %s now: deleting the %s", kind, other.kind)
            await self.client.delete(other, metadata["name"], metadata["namespace"], uid=live["metadata"]["uid"])
            self.applier.forget(other, metadata["namespace"], metadata["name"])

    async def _write_status(
        self, request: Request, falco: Falco, raw: Json, kind: str, workload: Json | None, error: str | None,
        artifacts: Json, extra_conditions: list[Json] | None = None,
    ) -> tuple[Json, float | None]:  # fmt: skip
        """The status now live, and the seconds a held drop of ``programmed`` still waits (``counts_hold``)."""
        old = raw.get("status")
        metadata = raw["metadata"]
        if workload is None:  # an earlier object failed: the counts still come from the live workload
            workload = self.cache.get(DAEMON_SETS if kind == "DaemonSet" else DEPLOYMENTS, metadata["name"],
                                      metadata["namespace"])  # fmt: skip
        status = desired_status(
            kind=kind, workload=workload, version=status_version(falco, self.options), error=error,
            generation=int(raw["metadata"].get("generation") or 0), old=old, now=self.clock(), artifacts=artifacts,
            extra_conditions=extra_conditions or [],
        )  # fmt: skip
        if status == old:
            self._counts_since.pop(request, None)
            return status, None
        if programmed_dropped(old, status):
            now = self.monotonic()
            held = counts_hold(self._counts_since.setdefault(request, now), now)
            if held is not None and old is not None:
                return old, held
        self._counts_since.pop(request, None)
        await self.client.patch_status(FALCOS, metadata["name"], status_patch(old, status), metadata["namespace"])
        await report_transitions(self.events, raw, old, status)
        return status, None

    async def _drop_legacy_finalizer(self, raw: Json) -> Json:
        """Remove the finalizer earlier versions added (once per Falco, after an upgrade)."""
        metadata = raw["metadata"]
        finalizers = list(metadata.get("finalizers") or [])
        if LEGACY_FINALIZER not in finalizers:
            return raw
        kept = [f for f in finalizers if f != LEGACY_FINALIZER]
        patch = {"metadata": {"finalizers": kept or None, "resourceVersion": metadata["resourceVersion"]}}
        updated: Json = await self.client.merge_patch(FALCOS, metadata["name"], patch, metadata["namespace"])
        return updated

    async def _remove_cluster_objects(self, request: Request) -> None:
        if self.cache.namespaces and request.namespace not in self.cache.namespaces:
            return  # a Falco of a namespace this operator does not watch (another installation's)
        name = cluster_object_name(request.namespace, request.name)
        for resource in (CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES):
            if self.cache.get(resource, name) is not None:
                log.info("removing %s %s of a Falco that no longer exists", resource.kind, name)
                await self.client.delete(resource, name)
            self.applier.forget(resource, "", name)

    async def _on_deletion(self, raw: Json) -> None:
        metadata = raw["metadata"]
        name = cluster_object_name(metadata["namespace"], metadata["name"])
        for resource in (CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES):
            # The cache may not show an object applied a moment ago: what this operator applied is deleted too.
            if self.cache.get(resource, name) is not None or self.applier.has_applied(resource, "", name):
                await self.client.delete(resource, name)
            self.applier.forget(resource, "", name)
        if LEGACY_FINALIZER in (metadata.get("finalizers") or []):
            await self._drop_legacy_finalizer(raw)
        self.events.forget(raw)
