"""How the client reaches the API server.

``Kr8sTransport`` goes through kr8s, which understands every kubeconfig users have (exec plugins, OIDC...).
``DirectTransport`` speaks HTTP itself (``http.py``) with the credentials a pod or a test has (the in-cluster
service account, or a kubeconfig with a token or a client certificate): it keeps small processes such as the
artifact agent free of kr8s and httpx and their dependencies (about 18 MiB and 3.5 MiB of resident memory).
Both raise the errors of ``http.py`` (``TransportError``, ``ConnectError``, ``TimedOut``) for failures below HTTP.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from base64 import b64decode
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import yaml

from ..records import record
from .http import ConnectError, HttpClient, TimedOut, Timeouts, TransportError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IDLE_CONNECTIONS = 8
"""Kept-alive connections per client: enough for the operator's concurrent reconciles to reuse most of theirs."""


class Response(Protocol):
    """What the client reads of a response (``http.Response``, or httpx's through kr8s)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def text(self) -> str:
        """The body, when it was read (not streamed)."""
        ...

    async def aread(self) -> bytes: ...

    def aiter_lines(self) -> AsyncIterator[str]: ...


class Transport(Protocol):
    host: str
    """``host:port`` of the API server, for metrics."""

    def open(
        self, method: str, path: str, *, params: dict[str, str] | None, headers: dict[str, str], content: str | None,
        timeout: float | Timeouts, stream: bool,
    ) -> AbstractAsyncContextManager[Response]:  # fmt: skip
        """Send one request to an absolute API path; the response is valid inside the context."""
        ...

    async def reauthenticate(self) -> None:
        """Reload credentials (a rotated service-account token) after a 401."""

    async def fork(self) -> Transport:
        """The same configuration with its own connection pool."""
        ...

    async def close(self) -> None: ...


class Kr8sTransport:
    def __init__(self, api: Any, connect_args: dict[str, str | None]) -> None:
        self._api = api
        self._connect_args = connect_args
        self.host = urlsplit(api.auth.server).netloc

    @classmethod
    async def connect(cls, connect_args: dict[str, str | None]) -> Kr8sTransport:
        import kr8s.asyncio  # only processes that use this transport pay for kr8s

        api = await kr8s.asyncio.Api(bypass_factory=True, **connect_args)
        return cls(api, connect_args)

    @asynccontextmanager
    async def open(
        self, method: str, path: str, *, params: dict[str, str] | None, headers: dict[str, str], content: str | None,
        timeout: float | Timeouts, stream: bool,
    ) -> AsyncIterator[Response]:  # fmt: skip
        import httpx
        from kr8s._exceptions import APITimeoutError

        root, _, rest = path.lstrip("/").partition("/")
        extra: dict[str, Any] = {"content": content} if content is not None else {}
        limits = Timeouts.of(timeout)
        try:
            async with self._api.call_api(
                method, version="", base=f"/{root}", url=rest, raise_for_status=False, stream=stream, params=params,
                headers=headers, timeout=httpx.Timeout(limits.connect, read=limits.read, write=limits.write),
                **extra,
            ) as response:  # fmt: skip
                yield response
        # httpx's errors become the project's, also those of a stream read in the caller's context.
        except (APITimeoutError, httpx.TimeoutException) as error:
            raise TimedOut(_describe(error)) from error
        except httpx.ConnectError as error:
            raise ConnectError(_describe(error)) from error
        except httpx.TransportError as error:
            raise TransportError(_describe(error)) from error

    async def reauthenticate(self) -> None:
        await self._api.auth.reauthenticate()
        await self._api._create_session()

    async def fork(self) -> Kr8sTransport:
        return await Kr8sTransport.connect(self._connect_args)

    async def close(self) -> None:
        session = self._api._session
        if session is not None:
            await session.aclose()


@record(frozen=True)
class Credentials:
    server: str
    ca_file: str | None = None
    insecure: bool = False
    token: str | None = None
    token_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @classmethod
    def in_cluster(cls, directory: Path = SERVICE_ACCOUNT_DIR) -> Credentials:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise ValueError("not in a cluster (KUBERNETES_SERVICE_HOST is unset) and no kubeconfig was given")
        server_host = f"[{host}]" if ":" in host else host
        return cls(f"https://{server_host}:{port}", ca_file=str(directory / "ca.crt"),
                   token_file=str(directory / "token"))  # fmt: skip

    @classmethod
    def from_kubeconfig(cls, path: str, context: str | None = None) -> Credentials:
        """The current (or named) context of a kubeconfig; data fields are written to private temporary files."""
        config = yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        name = context or config.get("current-context")
        entry = _named(config.get("contexts"), name, "context")
        cluster = _named(config.get("clusters"), entry.get("cluster"), "cluster")
        user = _named(config.get("users"), entry.get("user"), "user") if entry.get("user") else {}
        if "exec" in user or "auth-provider" in user:
            raise ValueError(f"{path}: exec and auth-provider credentials need the kr8s transport")
        base = Path(path).parent
        return cls(
            server=str(cluster["server"]),
            ca_file=_file(cluster, "certificate-authority", base),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
            token=user.get("token"),
            token_file=_file(user, "tokenFile", base, data_key=None),
            cert_file=_file(user, "client-certificate", base),
            key_file=_file(user, "client-key", base),
        )

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def bearer_token(self) -> str | None:
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        return self.token


def _named(items: Any, name: Any, what: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return dict(item.get(what) or {})
    raise ValueError(f"kubeconfig has no {what} named {name!r}")


def _file(section: dict[str, Any], key: str, base: Path, data_key: str | None = "") -> str | None:
    """The path of ``key``, or ``key-data`` written to a private temporary file."""
    if section.get(key):
        return str(base / section[key])
    data = section.get(f"{key}-data") if data_key is not None else None
    if not data:
        return None
    handle, name = tempfile.mkstemp(prefix="kube-credential-")
    with os.fdopen(handle, "wb") as file:
        file.write(b64decode(data))
    return name


class DirectTransport:
    def __init__(self, credentials: Credentials, tls: ssl.SSLContext | None = None) -> None:
        self.credentials = credentials
        self.host = urlsplit(credentials.server).netloc
        # One TLS context for every fork: each would otherwise load the CA and the client certificate again.
        self._tls = tls or credentials.ssl_context()
        self._client = self._new_client()
        self._retired: HttpClient | None = None

    def _new_client(self) -> HttpClient:
        token = self.credentials.bearer_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return HttpClient(self.credentials.server, ssl_context=self._tls, headers=headers, max_idle=IDLE_CONNECTIONS)

    @asynccontextmanager
    async def open(
        self, method: str, path: str, *, params: dict[str, str] | None, headers: dict[str, str], content: str | None,
        timeout: float | Timeouts, stream: bool,
    ) -> AsyncIterator[Response]:  # fmt: skip
        async with self._client.open(method, path, params=params, headers=headers, content=content, timeout=timeout,
                                     stream=stream) as response:  # fmt: skip
            yield response

    async def reauthenticate(self) -> None:
        # Requests in flight on the previous client finish on it; it is closed at the next refresh (tokens rotate
        # hourly) or with the transport, never under them.
        previous, self._client = self._client, self._new_client()
        if self._retired is not None:
            await self._retired.aclose()
        self._retired = previous

    async def fork(self) -> DirectTransport:
        return DirectTransport(self.credentials, self._tls)

    async def close(self) -> None:
        if self._retired is not None:
            await self._retired.aclose()
        await self._client.aclose()


async def connect_transport(
    *, kubeconfig: str | None, serviceaccount: str | None, context: str | None, direct: bool
) -> Transport:
    if not direct:
        return await Kr8sTransport.connect({"kubeconfig": kubeconfig, "serviceaccount": serviceaccount,
                                            "context": context})  # fmt: skip
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        return DirectTransport(Credentials.from_kubeconfig(path.split(os.pathsep)[0], context))
    return DirectTransport(Credentials.in_cluster(Path(serviceaccount) if serviceaccount else SERVICE_ACCOUNT_DIR))


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
