"""An informer: list, then watch from the list's resourceVersion, keeping a local store and calling handlers.

Watches ask for bookmarks and a random server-side timeout (300-600 s), have an inactivity deadline, and
restart from the last resourceVersion seen; a 410 Gone relists. Errors back off exponentially with jitter.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from ..records import record
from .backoff import Backoff
from .client import Client
from .errors import ApiError, Gone
from .http import TransportError
from .resources import Resource
from .store import IndexFunc, Store, object_key

Transform = Callable[[dict[str, Any]], dict[str, Any]]
"""What an informer keeps of each object (after ``strip_managed_fields``): the fields its consumers read."""

Json = dict[str, Any]
log = logging.getLogger("falco_operator.kube.informer")
WATCH_BACKOFF_CAP = 5.0
"""Longest wait between failed lists or watches: after an API server outage, watches resume within seconds."""
CLEAN_END_PAUSE = (0.05, 0.5)

METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"


@record(frozen=True)
class EventHandler:
    on_add: Callable[[Json], None] | None = None
    on_update: Callable[[Json, Json], None] | None = None
    on_delete: Callable[[Json], None] | None = None


class Informer:
    def __init__(
        self,
        client: Client,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        metadata_only: bool = False,
        resync_period: float | None = None,
        indexers: dict[str, IndexFunc] | None = None,
        inactivity_timeout: float = 120.0,
        watch_timeout: tuple[int, int] = (300, 600),
        backoff: Backoff | None = None,
        transform: Transform | None = None,
    ) -> None:
        self.resource = resource
        self.transform = transform
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.metadata_only = metadata_only
        self.resync_period = resync_period
        self.inactivity_timeout = inactivity_timeout
        self.watch_timeout = watch_timeout
        self.store = Store(indexers)
        self.has_synced = False
        self.requests = 0
        """LIST and WATCH requests made, for tests and diagnostics."""
        self.relists = 0
        """Lists after the first one (410 Gone)."""
        self.events_received = 0
        """Watch events other than bookmarks that crossed the wire."""
        self.last_error: BaseException | None = None
        """The error of the last failed list or watch; None once a list or watch succeeds again."""
        self.failing_since: float | None = None
        """``time.monotonic()`` of the first failure in the current run of failures; None when healthy."""
        self._error_handlers: list[Callable[[BaseException], None]] = []
        self._client = client
        self._backoff = backoff or Backoff(initial=0.8, cap=WATCH_BACKOFF_CAP)
        self._handlers: list[EventHandler] = []
        self._resource_version = ""

    @property
    def name(self) -> str:
        scope = f" in {self.namespace}" if self.namespace else ""
        selectors = ",".join(filter(None, [self.label_selector, self.field_selector]))
        return f"{self.resource.plural}{scope}" + (f" [{selectors}]" if selectors else "")

    def add_handler(self, handler: EventHandler) -> None:
        """Register handlers; when already synced, the handler is first told of every cached object."""
        self._handlers.append(handler)
        if self.has_synced and handler.on_add:
            for obj in self.store.objects():
                handler.on_add(obj)

    def add_error_handler(self, handler: Callable[[BaseException], None]) -> None:
        """Called with each list or watch failure (then the informer backs off and retries by itself)."""
        self._error_handlers.append(handler)

    def failing_for(self) -> float:
        """Seconds the informer has been failing without a success in between (0 when healthy)."""
        return 0.0 if self.failing_since is None else time.monotonic() - self.failing_since

    def _failed(self, error: BaseException) -> None:
        self.last_error = error
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        for handler in self._error_handlers:
            try:
                handler(error)
            except Exception:
                log.exception("error handler failed")

    def _succeeded(self) -> None:
        self.last_error = None
        self.failing_since = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; reports started once the first list is in the store."""
        client = await self._client.fork()
        try:
            await self._relist(client, initial=True)
            self.has_synced = True
            task_status.started()
            async with anyio.create_task_group() as group:
                if self.resync_period:
                    group.start_soon(self._resync_loop)
                await self._watch_loop(client)
        finally:
            with anyio.CancelScope(shield=True):
                await client.close()

    async def _watch_loop(self, client: Client) -> None:
        while True:
            try:
                await self._watch(client)
                # A watch ends cleanly at its timeout; a proxy that ends every watch at once must not make this
                # a tight loop across all informers: a short jittered pause before the next one.
                await anyio.sleep(random.uniform(*CLEAN_END_PAUSE))
            except Gone:
                log.info("watch of %s expired (410 Gone); relisting", self.name)
                self.relists += 1
                await self._relist(client, initial=False)
            except (ApiError, TransportError, ValueError) as error:
                self._failed(error)
                delay = self._backoff.next_delay()
                log.warning("watch of %s failed: %s; retrying in %.1fs", self.name, _describe(error), delay)
                await anyio.sleep(delay)

    async def _relist(self, client: Client, *, initial: bool) -> None:
        # The first list may come from the watch cache (resourceVersion=0); after 410 Gone read consistently.
        resource_version: str | None = "0" if initial else None
        while True:
            try:
                self.requests += 1
                items, self._resource_version = await client.list(
                    self.resource, self.namespace, label_selector=self.label_selector,
                    field_selector=self.field_selector, resource_version=resource_version,
                    accept=METADATA_LIST if self.metadata_only else None,
                )  # fmt: skip
                self._succeeded()
                self._backoff.reset()  # a good list: the next failure starts from a short delay again
                break
            except (ApiError, TransportError) as error:
                self._failed(error)
                delay = self._backoff.next_delay()
                log.warning("list of %s failed: %s; retrying in %.1fs", self.name, _describe(error), delay)
                resource_version = None if isinstance(error, Gone) else resource_version
                await anyio.sleep(delay)
        self._replace(items)

    def _replace(self, items: list[Json]) -> None:
        fresh = {object_key(item): self._cached(item) for item in items}
        for obj in fresh.values():
            previous = self.store.upsert(obj)
            if previous is None:
                self._notify_add(obj)
            elif _version(previous) != _version(obj):
                self._notify_update(previous, obj)
        for key in [key for key in self.store.keys() if key not in fresh]:  # noqa: SIM118
            gone = self.store.get(key)
            if gone is not None:
                self.store.delete(gone)
                self._notify_delete(gone)

    def _cached(self, obj: Json) -> Json:
        obj = strip_managed_fields(obj)
        return shared_keys(self.transform(obj) if self.transform else obj)

    async def _watch(self, client: Client) -> None:
        params = {
            "watch": "1",
            "resourceVersion": self._resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(random.randint(*self.watch_timeout)),
        }
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        if self.field_selector:
            params["fieldSelector"] = self.field_selector
        self.requests += 1
        accept = METADATA_WATCH if self.metadata_only else None
        async with client.stream(
            self.resource.path(self.namespace), params=params, read_timeout=self.inactivity_timeout, accept=accept
        ) as response:
            self._succeeded()
            async for line in response.aiter_lines():
                if line:
                    self._apply_event(json.loads(line))

    def _apply_event(self, event: Json) -> None:
        kind = event.get("type")
        obj: Json = event.get("object") or {}
        if kind == "ERROR":
            code = int(obj.get("code") or 0)
            if code == 410:
                raise Gone(410, str(obj.get("message", "")), str(obj.get("reason", "Expired")), obj)
            raise ApiError(code, str(obj.get("message", obj)), str(obj.get("reason", "")), obj)
        version = _version(obj)
        if version:
            self._resource_version = version
        if kind == "BOOKMARK":
            return
        self.events_received += 1
        # Handlers see what the cache holds (transformed), as they do after a relist.
        cached = self._cached(obj)
        if kind in ("ADDED", "MODIFIED"):
            previous = self.store.upsert(cached)
            if previous is None:
                self._notify_add(cached)
            else:
                self._notify_update(previous, cached)
        elif kind == "DELETED":
            previous = self.store.delete(cached)
            self._notify_delete(previous or cached)
        # A watch that delivers events is healthy: later failures start from a short delay again.
        self._backoff.reset()

    async def _resync_loop(self) -> None:
        assert self.resync_period
        while True:
            await anyio.sleep(self.resync_period)
            for obj in self.store.objects():
                self._notify_update(obj, obj)

    def _notify_add(self, obj: Json) -> None:
        for handler in self._handlers:
            if handler.on_add:
                _guard(handler.on_add, obj)

    def _notify_update(self, old: Json, new: Json) -> None:
        for handler in self._handlers:
            if handler.on_update:
                _guard(handler.on_update, old, new)

    def _notify_delete(self, obj: Json) -> None:
        for handler in self._handlers:
            if handler.on_delete:
                _guard(handler.on_delete, obj)


def strip_managed_fields(obj: Json) -> Json:
    """The object without ``metadata.managedFields``: nothing reads them from a cache, and they are often the
    larger half of an object (a DaemonSet's lists every field of its pod template twice)."""
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
    return obj


_KEYS: dict[str, str] = {}
KEYS_KEPT = 65_536
"""At most this many distinct keys are shared (field names, label and annotation keys: a small vocabulary)."""


def shared_keys(obj: Json) -> Json:
    """The object with its mapping keys replaced by one shared copy of each: a JSON decoder makes new key strings
    for every document, about a kilobyte of each small cached object."""
    return _share(obj)  # type: ignore[no-any-return]


def _share(value: Any) -> Any:
    if isinstance(value, dict):
        shared: dict[str, Any] = {}
        for key, item in value.items():
            kept = _KEYS.get(key)
            if kept is None:
                kept = key
                if len(_KEYS) < KEYS_KEPT:
                    _KEYS[key] = key
            shared[kept] = _share(item)
        return shared
    if isinstance(value, list):
        return [_share(item) for item in value]
    return value


def _version(obj: Json) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _guard(function: Callable[..., None], *args: Json) -> None:
    try:
        function(*args)
    except Exception:
        log.exception("event handler failed")


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
