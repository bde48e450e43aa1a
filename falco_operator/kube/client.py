"""A small typed client over kr8s: explicit namespaces, a timeout on every call, plain dicts, metrics.

kr8s provides configuration (kubeconfig or in-cluster service account) and authentication; requests go
through its ``call_api`` with ``raise_for_status=False`` so that errors are mapped here, once, by status.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import kr8s.asyncio
from kr8s._exceptions import APITimeoutError

from .errors import ApiError, NotFound, Unreachable
from .metrics import RuntimeMetrics
from .resources import Resource, ResourceRegistry

Json = dict[str, Any]
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
DEFAULT_TIMEOUT = 30.0
PAGE_SIZE = 500


class Client:
    def __init__(
        self,
        api: kr8s.asyncio.Api,
        *,
        field_manager: str,
        metrics: RuntimeMetrics | None = None,
        registry: ResourceRegistry | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_args: dict[str, str | None] | None = None,
    ) -> None:
        self._api = api
        self.field_manager = field_manager
        self.metrics = metrics
        self.registry = registry or ResourceRegistry()
        self.timeout = timeout
        self._connect_args = connect_args or {}
        self.host = urlsplit(api.auth.server).netloc

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
    ) -> Client:
        """Connect with a kubeconfig (``KUBECONFIG`` or ``~/.kube/config`` when unset) or in-cluster credentials."""
        connect_args = {"kubeconfig": kubeconfig, "serviceaccount": serviceaccount, "context": context}
        api = await _new_api(connect_args)
        return cls(api, field_manager=field_manager, metrics=metrics, registry=registry, timeout=timeout,
                   connect_args=connect_args)  # fmt: skip

    async def fork(self) -> Client:
        """A client with the same configuration and its own connection pool (informers use one each)."""
        api = await _new_api(self._connect_args)
        return Client(api, field_manager=self.field_manager, metrics=self.metrics, registry=self.registry,
                      timeout=self.timeout, connect_args=self._connect_args)  # fmt: skip

    async def close(self) -> None:
        session = self._api._session
        if session is not None:
            await session.aclose()

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
    ) -> Any:
        """One request; returns the decoded JSON body or raises ``ApiError`` (``NotFound``, ``Conflict``...)."""
        kwargs: dict[str, Any] = {"params": params, "timeout": timeout or self.timeout}
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        kwargs["headers"] = headers
        if body is not None:
            kwargs["content"] = json.dumps(body, separators=(",", ":"))
        for attempt in range(2):
            status, text = await self._send(method, path, kwargs)
            if status == 401 and attempt == 0:
                await self._reauthenticate()
                continue
            break
        decoded = _decode(text)
        if status >= 400:
            raise ApiError.from_response(status, decoded, text)
        return decoded

    async def _send(self, method: str, path: str, kwargs: dict[str, Any]) -> tuple[int, str]:
        root, _, rest = path.lstrip("/").partition("/")
        code = "<error>"
        try:
            async with self._api.call_api(
                method, version="", base=f"/{root}", url=rest, raise_for_status=False, **kwargs
            ) as response:
                code = str(response.status_code)
                return response.status_code, response.text
        except (httpx.TransportError, APITimeoutError, OSError) as error:
            raise Unreachable(f"{method} {path}: {type(error).__name__}: {error}") from error
        finally:
            self._count(code, method)

    @asynccontextmanager
    async def stream(
        self, path: str, *, params: dict[str, str], read_timeout: float, accept: str | None = None
    ) -> AsyncIterator[httpx.Response]:
        """A streaming GET (watches); the body is read by the caller. Error statuses raise ``ApiError``."""
        root, _, rest = path.lstrip("/").partition("/")
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        headers = {"Accept": accept} if accept else {}
        code = "<error>"
        try:
            async with self._api.call_api(
                "GET", version="", base=f"/{root}", url=rest, raise_for_status=False, stream=True,
                params=params, timeout=timeout, headers=headers,
            ) as response:  # fmt: skip
                code = str(response.status_code)
                if response.status_code >= 400:
                    text = (await response.aread()).decode(errors="replace")
                    if response.status_code == 401:
                        await self._reauthenticate()
                    raise ApiError.from_response(response.status_code, _decode(text), text)
                yield response
        except (httpx.TransportError, APITimeoutError, OSError) as error:
            raise Unreachable(f"watch {path}: {type(error).__name__}: {error}") from error
        finally:
            self._count(code, "GET")

    def _count(self, code: str, method: str) -> None:
        if self.metrics is not None:
            self.metrics.rest_requests.labels(code, method.upper(), self.host).inc()

    async def _reauthenticate(self) -> None:
        # Projected service-account tokens rotate: reload credentials and rebuild the session.
        await self._api.auth.reauthenticate()
        await self._api._create_session()

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


async def _new_api(connect_args: dict[str, str | None]) -> kr8s.asyncio.Api:
    api: kr8s.asyncio.Api = await kr8s.asyncio.Api(bypass_factory=True, **connect_args)
    return api
