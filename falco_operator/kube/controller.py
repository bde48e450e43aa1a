"""Controllers: informer events become keys in a work queue; workers reconcile them one key at a time.

One place maps each reconcile outcome to a queue action and a metric:
success -> forget; ``Result(requeue_after=t)`` -> forget and add after t; ``Result(requeue=True)`` or an error
-> rate-limited requeue; ``TerminalError`` -> forget (retrying cannot help).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.abc

from .errors import ApiError, TerminalError
from .informer import EventHandler, Informer
from .logs import log_context
from .metrics import RuntimeMetrics
from .workqueue import ShutDown, WorkQueue, default_controller_rate_limiter

Json = dict[str, Any]
log = logging.getLogger("falco_operator.kube.controller")


@dataclass(frozen=True, order=True)
class Request:
    namespace: str
    name: str

    @classmethod
    def for_object(cls, obj: Json) -> Request:
        metadata = obj.get("metadata") or {}
        return cls(str(metadata.get("namespace") or ""), str(metadata["name"]))

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


EVERY_NAME = "*"
"""The name of a request for every object of a namespace (``every_object_in``): no object can be named ``*``."""
EVERYWHERE = "*"
"""The namespace of a request for every object in every namespace: no namespace can be named ``*``."""


def every_object_in(namespace: str) -> Request:
    """A request that the controller turns, when the queue hands it out, into one request per object of
    ``namespace`` (``EVERYWHERE``: of every namespace) that it then holds (``Controller.fan_out``). A burst of
    events that each concern everything in a namespace (pods coming and going, for every artifact of it) costs
    one list of the objects per burst instead of one per event."""
    return Request(namespace, EVERY_NAME)


@dataclass(frozen=True)
class Result:
    requeue: bool = False
    requeue_after: float | None = None


class Reconciler(Protocol):
    async def reconcile(self, request: Request) -> Result | None: ...


@dataclass(frozen=True)
class Predicate:
    """Filters events before they enqueue; each function returns True to let the event through."""

    create: Callable[[Json], bool] = lambda obj: True
    update: Callable[[Json, Json], bool] = lambda old, new: True
    delete: Callable[[Json], bool] = lambda obj: True


def _meta(obj: Json) -> Json:
    meta: Json = obj.get("metadata") or {}
    return meta


GENERATION_CHANGED = Predicate(
    update=lambda old, new: (
        _meta(old).get("generation") != _meta(new).get("generation") or _meta(new).get("generation") is None
    )
)
LABELS_CHANGED = Predicate(update=lambda old, new: _meta(old).get("labels") != _meta(new).get("labels"))


def any_of(*predicates: Predicate) -> Predicate:
    return Predicate(
        create=lambda obj: any(p.create(obj) for p in predicates),
        update=lambda old, new: any(p.update(old, new) for p in predicates),
        delete=lambda obj: any(p.delete(obj) for p in predicates),
    )


Mapper = Callable[[Json], Iterable[Request]]


def controller_owner(api_group: str, kind: str) -> Mapper:
    """Map an owned object to its controller owner of ``kind`` (same namespace) from ownerReferences."""

    def mapper(obj: Json) -> list[Request]:
        for ref in _meta(obj).get("ownerReferences") or []:
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            if ref.get("controller") and ref.get("kind") == kind and group == api_group:
                return [Request(str(_meta(obj).get("namespace") or ""), str(ref["name"]))]
        return []

    return mapper


class Controller:
    def __init__(
        self,
        name: str,
        reconciler: Reconciler,
        *,
        metrics: RuntimeMetrics,
        workers: int = 1,
    ) -> None:
        self.name = name
        self.reconciler = reconciler
        self.metrics = metrics
        self.workers = workers
        self.fan_out: Callable[[str], Iterable[Request]] | None = None
        """What ``every_object_in(namespace)`` stands for (``EVERYWHERE``: every namespace); set by a controller
        whose watches map events to such requests."""
        self.queue: WorkQueue[Request] = WorkQueue(
            name, rate_limiter=default_controller_rate_limiter(), metrics=metrics.queue_metrics(name)
        )
        metrics.watch_queue(name, self.queue.unfinished_work_seconds, self.queue.longest_running_processor_seconds)
        metrics.max_concurrent.labels(name).set(workers)
        metrics.active_workers.labels(name).set(0)
        for result in ("success", "error", "requeue", "requeue_after"):
            metrics.reconcile_total.labels(name, result)
        metrics.reconcile_errors.labels(name)
        metrics.terminal_errors.labels(name)
        metrics.reconcile_panics.labels(name)

    def for_(self, informer: Informer, *predicates: Predicate) -> Controller:
        """Reconcile the objects of ``informer`` themselves, and all of them at each periodic resync."""
        return self.watches(informer, lambda obj: [Request.for_object(obj)], *predicates, resync=True)

    def owns(self, informer: Informer, api_group: str, kind: str, *predicates: Predicate) -> Controller:
        """Reconcile the controller owner (of ``kind``) of each object of ``informer``."""
        return self.watches(informer, controller_owner(api_group, kind), *predicates)

    def watches(
        self, informer: Informer, mapper: Mapper, *predicates: Predicate, delay: float = 0.0, resync: bool = False
    ) -> Controller:
        """Reconcile what ``mapper`` names for each event that passes the predicates.

        ``delay`` coalesces bursts in the queue: the first event schedules the key ``delay`` seconds later and
        events until then add nothing, so N events become one reconcile. ``resync``: the informer's periodic
        resync (the same object handed twice) reconciles whatever the predicates say; otherwise it is an update
        like any other, which predicates that look for a change let through only when there is one. The primary
        objects of a controller resync (``for_``); a secondary watch must not turn every resync of, say, the
        Falcos into a reconcile of everything each Falco maps to.
        """

        def enqueue(obj: Json) -> None:
            for request in mapper(obj):
                if delay > 0:
                    self.queue.add_after(request, delay)
                else:
                    self.queue.add(request)

        def on_add(obj: Json) -> None:
            if all(p.create(obj) for p in predicates):
                enqueue(obj)

        def on_update(old: Json, new: Json) -> None:
            if (resync and old is new) or all(p.update(old, new) for p in predicates):
                enqueue(new)

        def on_delete(obj: Json) -> None:
            if all(p.delete(obj) for p in predicates):
                enqueue(obj)

        informer.add_handler(EventHandler(on_add, on_update, on_delete))
        return self

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the workers until cancelled; on cancellation the queue shuts down."""
        try:
            async with anyio.create_task_group() as group:
                for _ in range(self.workers):
                    group.start_soon(self._worker)
                task_status.started()
        finally:
            self.queue.shutdown()

    async def _worker(self) -> None:
        while True:
            try:
                request = await self.queue.get()
            except ShutDown:
                return
            try:
                if request.name == EVERY_NAME and self.fan_out is not None:
                    self._expand(request)
                else:
                    await self._process(request)
            finally:
                self.queue.done(request)

    def _expand(self, request: Request) -> None:
        assert self.fan_out is not None
        self.queue.forget(request)
        for each in self.fan_out(request.namespace):
            self.queue.add(each)

    async def _process(self, request: Request) -> None:
        name = self.name
        reconcile_id = str(uuid.uuid4())
        active = self.metrics.active_workers.labels(name)
        active.inc()
        started = time.monotonic()
        try:
            with log_context(controller=name, namespace=request.namespace, name=request.name, reconcileID=reconcile_id):
                outcome = await self._reconcile(request)
        finally:
            active.dec()
            self.metrics.reconcile_time.labels(name).observe(time.monotonic() - started)
        self.metrics.reconcile_total.labels(name, outcome).inc()

    async def _reconcile(self, request: Request) -> str:
        name = self.name
        try:
            result = await self.reconciler.reconcile(request) or Result()
        except TerminalError as error:
            log.error("reconcile failed and will not be retried until the object changes: %s", error)
            self.metrics.reconcile_errors.labels(name).inc()
            self.metrics.terminal_errors.labels(name).inc()
            self.queue.forget(request)
            return "error"
        except ApiError as error:
            log.warning("reconcile failed, will retry: %s", error)
            self.metrics.reconcile_errors.labels(name).inc()
            self.queue.add_rate_limited(request)
            return "error"
        except Exception:
            # A bug, not a refusal: count it as a panic, keep the worker alive and retry with backoff.
            log.exception("reconcile raised an unexpected exception, will retry")
            self.metrics.reconcile_errors.labels(name).inc()
            self.metrics.reconcile_panics.labels(name).inc()
            self.queue.add_rate_limited(request)
            return "error"
        if result.requeue_after is not None:
            self.queue.forget(request)
            self.queue.add_after(request, result.requeue_after)
            return "requeue_after"
        if result.requeue:
            self.queue.add_rate_limited(request)
            return "requeue"
        self.queue.forget(request)
        return "success"
