"""The Component reconciler: read from the caches, build the desired objects, apply what differs, write status.

The same shape as the Falco reconciler, and its parts: the Applier (no write when nothing changes), the ownership
check, the status computation and the Events on condition transitions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from ..api import Component
from ..instance.reconciler import controlled_by, namespace_terminating, permanent
from ..instance.status import (
    PROGRESS_DEADLINE,
    desired_status,
    replica_counts,
    report_transitions,
    rollout_age,
    status_patch,
    unreadable_status,
)
from ..kube import ApiError, Applier, Cache, Client, EventRecorder, Forbidden, Request, Result, TerminalError
from ..kube.conditions import utc_now
from ..kube.resources import CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES, DEPLOYMENTS, SERVICES
from ..resources import COMPONENTS
from .builders import (
    ComponentOptions,
    cluster_object_name,
    deploys_redis,
    desired_objects,
    redis_name,
    service_address,
    status_version,
)

Json = dict[str, Any]
log = logging.getLogger("falco_operator.component")


def redis_held_back(redis: Json | None) -> tuple[str, str] | None:
    """Why a UI whose pods are available is not Available yet: its deployed Redis is not (never a half-install)."""
    counts = replica_counts("Deployment", redis)
    if counts is None:
        return "RedisUnavailable", "its Redis Deployment does not exist yet"
    if counts.desired == 0 or counts.available < counts.desired or counts.unavailable > 0:
        return "RedisUnavailable", f"its Redis has {counts.available}/{counts.desired} pods available"
    return None


class ComponentReconciler:
    def __init__(
        self, client: Client, cache: Cache, options: ComponentOptions, events: EventRecorder,
        clock: Callable[[], str] = utc_now,
    ) -> None:  # fmt: skip
        self.client = client
        self.cache = cache
        self.options = options
        self.events = events
        self.applier = Applier(client)
        self.clock = clock

    async def reconcile(self, request: Request) -> Result | None:
        raw = self.cache.get(COMPONENTS, request.name, request.namespace)
        if raw is None:
            # Namespaced objects go by garbage collection; the cluster-scoped ones are removed here (also for
            # Components deleted while no operator ran: their ClusterRoles lead here by label). No finalizer.
            await self._remove_cluster_objects(request)
            return None
        if raw["metadata"].get("deletionTimestamp"):
            await self._remove_cluster_objects(request, also_applied=True)
            self.events.forget(raw)
            return None
        try:
            component = Component.model_validate(raw)
        except ValidationError as invalid:
            await self._report_unreadable(raw, invalid)
            raise TerminalError(f"cannot read Component {request}: {invalid}") from invalid
        try:
            error, applied = await self._apply_all(component, raw)
            if not deploys_redis(component):
                await self._remove_redis(raw)
        except Forbidden as forbidden:
            if namespace_terminating(forbidden):
                log.info("namespace %s is terminating; not applying", request.namespace)
                return None
            raise
        status = await self._write_status(component, raw, applied, error)
        if any(c["type"] == "Available" and c["reason"] == "RollingOut" for c in status["conditions"]):
            return Result(requeue_after=max(1.0, PROGRESS_DEADLINE - rollout_age(status["conditions"],
                                                                                 self.clock()) + 1.0))  # fmt: skip
        return None

    async def _apply_all(self, component: Component, raw: Json) -> tuple[str | None, dict[str, Json]]:
        """Apply every object; the first refusal (or a name someone else holds) as a message, and the Deployments
        as the API server returned them (by name)."""
        uid = raw["metadata"]["uid"]
        deployments: dict[str, Json] = {}
        for resource, desired in desired_objects(component, raw, self.options):
            name, namespace = desired["metadata"]["name"], desired["metadata"].get("namespace")
            live = self.cache.get(resource, name, namespace)
            if live is None and resource.namespaced:
                # The caches hold only labelled objects: look for one of the same name that is someone else's.
                live = await self.client.get_or_none(resource, name, namespace)
            if live is not None and resource.namespaced and not controlled_by(live, uid):
                return f"{resource.kind} {name} already exists and is not owned by this Component; rename one", {}
            try:
                applied = await self.applier.apply(resource, desired, live)
            except ApiError as refused:
                if not permanent(refused) or namespace_terminating(refused):
                    raise
                return f"the API server refused the {resource.kind} {name} ({refused.status}): {refused.message}", {}
            if resource == DEPLOYMENTS:
                deployments[name] = applied or live or {}
        return None, deployments

    async def _remove_redis(self, raw: Json) -> None:
        """A UI that names its own Redis now: delete the one the operator deployed (its claim stays, with the data,
        until the Component goes)."""
        metadata = raw["metadata"]
        name, namespace = redis_name(metadata["name"]), metadata["namespace"]
        for resource in (DEPLOYMENTS, SERVICES):
            live = self.cache.get(resource, name, namespace)
            if live is not None and controlled_by(live, metadata["uid"]):
                log.info("deleting %s %s: the Component names its own Redis", resource.kind, name)
                await self.client.delete(resource, name, namespace, uid=live["metadata"]["uid"])
            self.applier.forget(resource, namespace, name)

    async def _write_status(self, component: Component, raw: Json, applied: dict[str, Json],
                            error: str | None) -> Json:  # fmt: skip
        metadata = raw["metadata"]
        name, namespace = metadata["name"], metadata["namespace"]

        def deployment(deployment_name: str) -> Json | None:
            return applied.get(deployment_name) or self.cache.get(DEPLOYMENTS, deployment_name, namespace)

        held_back = redis_held_back(deployment(redis_name(name))) if deploys_redis(component) else None
        old = raw.get("status")
        status = desired_status(
            kind="Deployment", workload=deployment(name), version=status_version(component), error=error,
            generation=int(metadata.get("generation") or 0), old=old, now=self.clock(), held_back=held_back,
            extra_fields={"service": service_address(component)},
        )  # fmt: skip
        if status == old:
            return status
        await self.client.patch_status(COMPONENTS, name, status_patch(old, status), namespace)
        await report_transitions(self.events, raw, old, status)
        return status

    async def _report_unreadable(self, raw: Json, invalid: ValidationError) -> None:
        message = f"the operator cannot read this Component: {invalid}"[:2000]
        old = raw.get("status") or {}
        status = unreadable_status(old, message, int(raw["metadata"].get("generation") or 0), self.clock())
        if status != old:
            await self.client.patch_status(COMPONENTS, raw["metadata"]["name"], status, raw["metadata"]["namespace"])
            await self.events.emit(raw, "Warning", "InvalidSpec", message)

    async def _remove_cluster_objects(self, request: Request, also_applied: bool = False) -> None:
        if self.cache.namespaces and request.namespace not in self.cache.namespaces:
            return  # a Component of a namespace this operator does not watch (another installation's)
        name = cluster_object_name(request.namespace, request.name)
        for resource in (CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES):
            # While deleting, the cache may not show an object applied a moment ago: that is deleted too.
            if self.cache.get(resource, name) is not None or (
                also_applied and self.applier.has_applied(resource, "", name)
            ):
                log.info("removing %s %s of a Component that is going", resource.kind, name)
                await self.client.delete(resource, name)
            self.applier.forget(resource, "", name)
