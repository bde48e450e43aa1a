"""A small typed client: explicit namespaces, a timeout on every call, plain dicts, metrics.

A transport (``transport.py``) reaches the API server: kr8s by default, which provides configuration (any
kubeconfig or the in-cluster service account) and authentication, or the project's HTTP client (``http.py``)
for small processes.
Errors are mapped here, once, by status.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from .errors import ApiError, NotFound, Unreachable
from .http import Timeouts, TransportError
from .metrics import RuntimeMetrics
from .resources import Resource, ResourceRegistry
from .transport import Response, Transport, connect_transport

Json = dict[str, Any]
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
DEFAULT_TIMEOUT = 30.0
PAGE_SIZE = 500


class Client:
    def __init__(
        self,
        transport: Transport,
        *,
        field_manager: str,
        metrics: RuntimeMetrics | None = None,
        registry: ResourceRegistry | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._transport = transport
        self.field_manager = field_manager
        self.metrics = metrics
        self.registry = registry or ResourceRegistry()
        self.timeout = timeout
        self.host = transport.host
        self._auth_lock = anyio.Lock()
        self._auth_generation = 0
        """Bumped by each credential refresh: a request that saw a 401 refreshes only if no one did since."""
        self.refreshes = 0

    @classmethod
    async def connect(
        cls,
        *,
        kubeconfig: str | None = None,
        serviceaccount: str | None = None,
        context: str | None = None,
        field_manager: str,
        metrics: RuntimeMetrics | None = None,
        registry: ResourceRegistry | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        direct: bool = False,
    ) -> Client:
        """Connect with a kubeconfig (``KUBECONFIG`` or ``~/.kube/config`` when unset) or in-cluster credentials.

        ``direct`` skips kr8s: only the in-cluster service account and kubeconfigs with a token or a client
        certificate work then, in a fraction of the memory.
        """
        transport = await connect_transport(kubeconfig=kubeconfig, serviceaccount=serviceaccount, context=context,
                                            direct=direct)  # fmt: skip
        return cls(transport, field_manager=field_manager, metrics=metrics, registry=registry, timeout=timeout)

    async def fork(self) -> Client:
        """A client with the same configuration and its own connection pool (informers use one each)."""
        return Client(await self._transport.fork(), field_manager=self.field_manager, metrics=self.metrics,
                      registry=self.registry, timeout=self.timeout)  # fmt: skip

    async def close(self) -> None:
        await self._transport.close()

    # -- raw requests -------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        accept: str | None = None,
        decode: bool = True,
    ) -> Any:
        """One request; returns the decoded JSON body or raises ``ApiError`` (``NotFound``, ``Conflict``...).
        ``decode=False``: a successful answer's body is read but not decoded (None is returned)."""
        kwargs: dict[str, Any] = {"params": params, "timeout": timeout or self.timeout}
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        kwargs["headers"] = headers
        kwargs["content"] = json.dumps(body, separators=(",", ":")) if body is not None else None
        for attempt in range(2):
            generation = self._auth_generation
            status, text, retry_after = await self._send(method, path, kwargs)
            if status == 401 and attempt == 0:
                await self._reauthenticate(generation)
                continue
            break
        if status < 400 and not decode:
            return None
        decoded = _decode(text)
        if status >= 400:
            raise ApiError.from_response(status, decoded, text, retry_after)
        return decoded

    async def _send(self, method: str, path: str, kwargs: dict[str, Any]) -> tuple[int, str, str | None]:
        code = "<error>"
        try:
            async with self._transport.open(method, path, stream=False, **kwargs) as response:
                code = str(response.status_code)
                return response.status_code, response.text, response.headers.get("Retry-After")
        except (TransportError, OSError) as error:
            raise Unreachable(f"{method} {path}: {type(error).__name__}: {error}") from error
        finally:
            self._count(code, method)

    @asynccontextmanager
    async def stream(
        self, path: str, *, params: dict[str, str], read_timeout: float, accept: str | None = None
    ) -> AsyncIterator[Response]:
        """A streaming GET (watches); the body is read by the caller. Error statuses raise ``ApiError``."""
        timeout = Timeouts(connect=self.timeout, read=read_timeout, write=self.timeout)
        headers = {"Accept": accept} if accept else {}
        code = "<error>"
        generation = self._auth_generation
        try:
            async with self._transport.open(
                "GET", path, params=params, headers=headers, content=None, timeout=timeout, stream=True
            ) as response:
                code = str(response.status_code)
                if response.status_code >= 400:
                    text = (await response.aread()).decode(errors="replace")
                    if response.status_code == 401:
                        await self._reauthenticate(generation)
                    raise ApiError.from_response(response.status_code, _decode(text), text,
                                                response.headers.get("Retry-After"))  # fmt: skip
                yield response
        except (TransportError, OSError) as error:
            raise Unreachable(f"watch {path}: {type(error).__name__}: {error}") from error
        finally:
            self._count(code, "GET")

    def _count(self, code: str, method: str) -> None:
        if self.metrics is not None:
            self.metrics.rest_requests.labels(code, method.upper(), self.host).inc()

    async def _reauthenticate(self, seen_generation: int) -> None:
        """Projected service-account tokens rotate: reload credentials and rebuild the session, once for all the
        requests that met the same 401 (the others wait for it and retry with the new credentials)."""
        async with self._auth_lock:
            if self._auth_generation != seen_generation:
                return
            await self._transport.reauthenticate()
            self._auth_generation += 1
            self.refreshes += 1

    # -- typed helpers ------------------------------------------------------------------------------------

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> Json:
        result: Json = await self.request("GET", resource.path(namespace, name))
        return result

    async def get_or_none(self, resource: Resource, name: str, namespace: str | None = None) -> Json | None:
        try:
            return await self.get(resource, name, namespace)
        except NotFound:
            return None

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        accept: str | None = None,
    ) -> tuple[list[Json], str]:
        """All items, page by page; returns them with the list's resourceVersion."""
        params: dict[str, str] = {"limit": str(PAGE_SIZE)}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        items: list[Json] = []
        while True:
            page: Json = await self.request("GET", resource.path(namespace), params=params, accept=accept)
            for item in page.get("items") or []:
                # List items of built-in kinds come without apiVersion and kind; watch events carry them.
                if not accept:
                    item.setdefault("apiVersion", resource.api_version)
                    item.setdefault("kind", resource.kind)
                items.append(item)
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                return items, str(metadata.get("resourceVersion", ""))
            params = {k: v for k, v in params.items() if k != "resourceVersion"} | {"continue": token}

    async def create(self, resource: Resource, body: Json, namespace: str | None = None) -> Json:
        result: Json = await self.request("POST", resource.path(_namespace_of(resource, body, namespace)), body=body)
        return result

    async def update(self, resource: Resource, body: Json, *, subresource: str | None = None) -> Json:
        """PUT with the body's resourceVersion: optimistic concurrency, ``Conflict`` when it moved."""
        metadata = body["metadata"]
        path = resource.path(_namespace_of(resource, body, None), metadata["name"], subresource)
        result: Json = await self.request("PUT", path, body=body)
        return result

    async def apply(
        self, resource: Resource, body: Json, *, force: bool = True, subresource: str | None = None
    ) -> Json:
        """Server-side apply of ``body`` (its fields become owned by this client's field manager)."""
        path = resource.path(_namespace_of(resource, body, None), body["metadata"]["name"], subresource)
        params = {"fieldManager": self.field_manager, "force": "true" if force else "false"}
        result: Json = await self.request("PATCH", path, params=params, body=body, content_type=APPLY_PATCH)
        return result

    async def apply_unread(
        self, resource: Resource, body: Json, *, force: bool = True, subresource: str | None = None
    ) -> None:
        """``apply`` for a writer that does not read the object the server answers with: the answer (the whole
        object, a report of every artifact) is not decoded."""
        path = resource.path(_namespace_of(resource, body, None), body["metadata"]["name"], subresource)
        params = {"fieldManager": self.field_manager, "force": "true" if force else "false"}
        await self.request("PATCH", path, params=params, body=body, content_type=APPLY_PATCH, decode=False)

    async def merge_patch(
        self,
        resource: Resource,
        name: str,
        patch: Json,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> Json:
        params = {"fieldManager": self.field_manager}
        path = resource.path(namespace, name, subresource)
        result: Json = await self.request("PATCH", path, params=params, body=patch, content_type=MERGE_PATCH)
        return result

    async def patch_status(self, resource: Resource, name: str, status: Json, namespace: str | None = None) -> Json:
        return await self.merge_patch(resource, name, {"status": status}, namespace, subresource="status")

    async def delete(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
        uid: str | None = None,
    ) -> bool:
        """Delete; False when it was already gone."""
        options: Json = {"propagationPolicy": propagation}
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            await self.request("DELETE", resource.path(namespace, name), body=options)
        except NotFound:
            return False
        return True

    async def server_version(self) -> tuple[int, int]:
        """(major, minor) of the API server, from ``/version``."""
        version: Json = await self.request("GET", "/version")
        minor = "".join(ch for ch in str(version.get("minor", "0")) if ch.isdigit()) or "0"
        return int(version.get("major", 0)), int(minor)


def _namespace_of(resource: Resource, body: Json, namespace: str | None) -> str | None:
    declared = (body.get("metadata") or {}).get("namespace")
    if namespace and declared and namespace != declared:
        raise ValueError(f"{resource.kind} body says namespace {declared!r} but {namespace!r} was asked")
    chosen = namespace or declared
    if resource.namespaced and not chosen:
        raise ValueError(f"{resource.kind} is namespaced: set metadata.namespace")
    return chosen if resource.namespaced else None


def _decode(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
