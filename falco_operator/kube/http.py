"""A small HTTP/1.1 client on h11 and anyio, for the API server transport and the agent's look at Falco.

httpx (with httpcore, idna, email, urllib.request...) cost the artifact agent about 3.5 MiB of resident memory
for two plain uses: the API server and Falco's web server in the same pod. This client does what they need and no
more: absolute URLs or paths under a base URL, a small keep-alive pool per origin, TLS with the caller's
``ssl.SSLContext``, whole or streamed bodies (gzip decoded: it asks for gzip as httpx did, so the bytes on the
wire do not change), and connect, write and read timeouts (a read timeout is an inactivity limit: the longest
wait for the next bytes). A connection goes back to the pool only after a complete exchange that both sides keep
alive (``Connection: close`` is honoured); an error, a cancellation or a body left unread closes it.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import select
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio
import anyio.abc
import h11

from ..records import record

READ_SIZE = 65_536
CLOSE_TIMEOUT = 1.0
"""Closing a connection never waits for the peer; this bounds it should a stream do so all the same."""
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
Origin = tuple[str, str, int]


class TransportError(Exception):
    """No complete answer: the connection failed, broke or timed out, or the peer did not speak HTTP/1.1."""


class ConnectError(TransportError):
    """The TCP connection or the TLS handshake failed."""


class TimedOut(TransportError):
    """Connecting or sending took longer than its timeout, or no bytes of the response came for that long."""


class ProtocolError(TransportError):
    """The peer broke the protocol or closed the connection in the middle of an exchange."""


class _StaleConnection(TransportError):
    """A kept-alive connection the server had closed: nothing was answered, a fresh connection may try again."""


@record(frozen=True)
class Timeouts:
    connect: float
    read: float
    """The longest wait for the next bytes of a response: on a stream, an inactivity limit."""
    write: float

    @classmethod
    def of(cls, value: float | Timeouts) -> Timeouts:
        return value if isinstance(value, Timeouts) else cls(value, value, value)


class Headers(Mapping[str, str]):
    """Response header fields by case-insensitive name; a repeated field's values are joined with commas."""

    def __init__(self, fields: list[tuple[bytes, bytes]]) -> None:
        self._fields: dict[str, str] = {}
        for raw_name, raw_value in fields:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            self._fields[name] = f"{self._fields[name]}, {value}" if name in self._fields else value

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


class _Connection:
    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.protocol = h11.Connection(our_role=h11.CLIENT)
        self.idle_since = time.monotonic()
        self.reused = False
        self.heard = False
        """Bytes came in the current exchange: a failure after that is no stale connection."""

    def reusable(self, expiry: float) -> bool:
        """Idle for less than ``expiry`` and not readable: a readable idle connection was closed by the server."""
        if time.monotonic() - self.idle_since >= expiry:
            return False
        sock = self.stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if sock is None or sock.fileno() < 0:
            return False
        poller = select.poll()  # not select.select: it fails for descriptors above 1023
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)

    async def send(self, events: list[h11.Event], timeout: float) -> None:
        """Send the events' bytes in one write (a request's head and body: one TLS record, one system call)."""
        data = b"".join(self.protocol.send(event) or b"" for event in events)
        if not data:
            return
        try:
            with anyio.fail_after(timeout):
                await self.stream.send(data)
        except TimeoutError:
            raise TimedOut(f"sending took longer than {timeout:g} s") from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as error:
            if self.reused:
                raise _StaleConnection(f"kept-alive connection broken: {_describe(error)}") from error
            raise ProtocolError(f"connection broken while sending: {_describe(error)}") from error

    async def next_event(self, timeout: float) -> Any:
        while True:
            awaiting_answer = self.protocol.their_state is h11.SEND_RESPONSE
            try:
                event = self.protocol.next_event()
            except h11.RemoteProtocolError as error:
                if awaiting_answer and self.reused and not self.heard:
                    raise _StaleConnection("the server closed a kept-alive connection before answering") from error
                raise ProtocolError(f"malformed response or connection closed early: {error}") from error
            if event is not h11.NEED_DATA:
                return event
            try:
                with anyio.fail_after(timeout):
                    data = await self.stream.receive(READ_SIZE)
            except TimeoutError:
                raise TimedOut(f"no response bytes for {timeout:g} s") from None
            except anyio.EndOfStream:
                data = b""
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as error:
                if self.reused and not self.heard:
                    raise _StaleConnection(f"kept-alive connection broken: {_describe(error)}") from error
                raise ProtocolError(f"connection broken while reading: {_describe(error)}") from error
            self.heard = self.heard or bool(data)
            self.protocol.receive_data(data)

    def keeps_alive(self) -> bool:
        return self.protocol.our_state is h11.DONE and self.protocol.their_state is h11.DONE

    async def close(self) -> None:
        # The streams made here close at once (a socket is aborted, TLS is not unwrapped: no close_notify is
        # awaited), so the close is shielded rather than cancelled as ``aclose_forcefully`` does: cancelling a
        # scope formats the task's repr and schedules the cancellation, for every connection a server closes.
        with anyio.CancelScope(shield=True, deadline=anyio.current_time() + CLOSE_TIMEOUT):
            await self.stream.aclose()


class Response:
    """A response whose body is read at most once: ``aread`` (then ``content``, ``text``, ``json``) or streamed."""

    def __init__(self, head: h11.Response, connection: _Connection, read_timeout: float) -> None:
        self.status_code: int = head.status_code
        self.headers = Headers(list(head.headers))
        self._connection = connection
        self._read_timeout = read_timeout
        self._content: bytes | None = None
        self._consumed = False
        self.complete = False
        """The whole body was received (the connection may be kept)."""

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives, still encoded."""
        if self._consumed:
            raise RuntimeError("the response body was already read")
        self._consumed = True
        while True:
            event = await self._connection.next_event(self._read_timeout)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
                return
            else:
                raise ProtocolError(f"connection ended in the middle of the body ({type(event).__name__})")

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The decoded body as it arrives."""
        encoding = self.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise ProtocolError(f"unsupported content encoding {encoding!r}")
        decoder = zlib.decompressobj(wbits=31) if encoding == "gzip" else None
        async for chunk in self.aiter_raw():
            if decoder is None:
                yield chunk
                continue
            try:
                decoded = decoder.decompress(chunk)
            except zlib.error as error:
                raise ProtocolError(f"malformed gzip body: {error}") from error
            if decoded:
                yield decoded
        if decoder is not None and (rest := decoder.flush()):
            yield rest

    async def aiter_lines(self) -> AsyncIterator[str]:
        """The body line by line (``\\n`` or ``\\r\\n``), without the line ends: one watch event a line."""
        pending = b""
        async for chunk in self.aiter_bytes():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.removesuffix(b"\r").decode(errors="replace")
        if pending:
            yield pending.removesuffix(b"\r").decode(errors="replace")

    async def aread(self) -> bytes:
        if self._content is None:
            self._content = b"".join([chunk async for chunk in self.aiter_bytes()])
        return self._content

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise RuntimeError("the response body has not been read (aread)")
        return self._content

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class HttpClient:
    """Requests to absolute ``http(s)://`` URLs, or to paths under ``base_url``, with a keep-alive pool per origin.

    ``ssl_context`` verifies HTTPS servers (the host name for DNS names, the address for IP addresses); without
    one, HTTPS uses the system's defaults with certifi's CA bundle, made on first use.
    """

    def __init__(
        self,
        base_url: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float | Timeouts = 5.0,
        max_idle: int = 4,
        keepalive_expiry: float = 5.0,
        max_connections: int = 100,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = dict(headers or {})
        self._ssl_context = ssl_context
        self._timeouts = Timeouts.of(timeout)
        self._max_idle = max_idle
        self._keepalive_expiry = keepalive_expiry
        self._idle: dict[Origin, list[_Connection]] = {}
        self._closed = False
        self._slots = anyio.Semaphore(max_connections)
        """Exchanges at once (streams included): more wait for a free one, up to the connect timeout, as in httpx."""

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the idle connections; connections in use close when their exchange ends."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                await connection.close()

    def idle_connections(self) -> int:
        return sum(len(connections) for connections in self._idle.values())

    async def get(self, url: str, *, timeout: float | Timeouts | None = None) -> Response:
        return await self.request("GET", url, timeout=timeout)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        content: str | bytes | None = None,
        timeout: float | Timeouts | None = None,
    ) -> Response:
        """One exchange with the body read (``content``, ``text``, ``json``); the connection is free again."""
        async with self.open(method, url, params=params, headers=headers, content=content, timeout=timeout) as got:
            return got

    @asynccontextmanager
    async def open(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        content: str | bytes | None = None,
        timeout: float | Timeouts | None = None,
        stream: bool = False,
    ) -> AsyncIterator[Response]:
        """Send a request; the response is valid inside the context, its body already read unless ``stream``."""
        timeouts = Timeouts.of(timeout) if timeout is not None else self._timeouts
        origin, request = self._prepare(method, url, params, headers, content)
        body = content.encode() if isinstance(content, str) else content
        try:
            self._slots.acquire_nowait()  # a free slot is taken without a pass through the event loop
        except anyio.WouldBlock:
            await self._wait_for_slot(timeouts.connect)
        try:
            async with self._exchanging(origin, request, body, timeouts, stream) as response:
                yield response
        finally:
            self._slots.release()

    async def _wait_for_slot(self, timeout: float) -> None:
        try:
            with anyio.fail_after(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise TimedOut(f"no free connection within {timeout:g} s") from None

    @asynccontextmanager
    async def _exchanging(
        self, origin: Origin, request: h11.Request, body: bytes | None, timeouts: Timeouts, stream: bool
    ) -> AsyncIterator[Response]:
        for attempt in range(2):
            connection = await self._acquire(origin, timeouts)
            try:
                response = await self._exchange(connection, request, body, timeouts)
            except _StaleConnection:
                await connection.close()
                if attempt == 0:
                    continue
                raise
            except BaseException:
                await connection.close()
                raise
            break
        try:
            if not stream:
                await response.aread()
            yield response
        finally:
            await self._release(origin, connection, response)

    def _prepare(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        content: str | bytes | None,
    ) -> tuple[Origin, h11.Request]:
        parts = urlsplit(url if "://" in url else f"{self._base_url}{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        query = "&".join(filter(None, [parts.query, urlencode(params or {})]))
        target = (parts.path or "/") + (f"?{query}" if query else "")
        fields = {"host": parts.netloc.rpartition("@")[2], "accept-encoding": "gzip"}
        fields |= {name.lower(): value for name, value in self._headers.items()}
        fields |= {name.lower(): value for name, value in (headers or {}).items()}
        if content is not None:
            fields["content-length"] = str(len(content.encode() if isinstance(content, str) else content))
        request = h11.Request(method=method, target=target, headers=list(fields.items()))
        return (parts.scheme, parts.hostname, port), request

    async def _acquire(self, origin: Origin, timeouts: Timeouts) -> _Connection:
        idle = self._idle.get(origin, [])
        while idle:
            connection = idle.pop()
            if connection.reusable(self._keepalive_expiry):
                connection.reused = True
                return connection
            await connection.close()
        return _Connection(await self._connect(origin, timeouts.connect))

    async def _connect(self, origin: Origin, timeout: float) -> anyio.abc.ByteStream:
        scheme, host, port = origin
        context = (self._ssl_context or _default_tls()) if scheme == "https" else None
        try:
            with anyio.fail_after(timeout):
                if context is None:
                    return (
                        await _connect_plain(host, port) if _is_address(host) else await anyio.connect_tcp(host, port)
                    )
                return await anyio.connect_tcp(host, port, ssl_context=context, tls_hostname=host,
                                               tls_standard_compatible=False)  # fmt: skip
        except TimeoutError:
            raise TimedOut(f"no connection to {host}:{port} within {timeout:g} s") from None
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as error:
            raise ConnectError(f"cannot connect to {host}:{port}: {_describe(error)}") from error

    async def _exchange(
        self, connection: _Connection, request: h11.Request, body: bytes | None, timeouts: Timeouts
    ) -> Response:
        events: list[h11.Event] = (
            [request, h11.Data(data=body), h11.EndOfMessage()] if body else [request, h11.EndOfMessage()]
        )
        await connection.send(events, timeouts.write)
        try:
            while True:
                event = await connection.next_event(timeouts.read)
                if isinstance(event, h11.Response):
                    return Response(event, connection, timeouts.read)
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.ConnectionClosed) and connection.reused and not connection.heard:
                    raise _StaleConnection("the server closed a kept-alive connection before answering")
                raise ProtocolError(f"the server closed the connection before answering ({type(event).__name__})")
        except _StaleConnection:
            # The request went out: only a request that may be repeated is sent again.
            if request.method.decode() in IDEMPOTENT:
                raise
            raise ProtocolError("the server closed a kept-alive connection before answering") from None

    async def _release(self, origin: Origin, connection: _Connection, response: Response) -> None:
        if self._closed or not response.complete or not connection.keeps_alive():
            await connection.close()
            return
        connection.protocol.start_next_cycle()
        connection.idle_since = time.monotonic()
        connection.heard = False
        idle = self._idle.setdefault(origin, [])
        idle.append(connection)
        if len(idle) > self._max_idle:
            await idle.pop(0).close()


async def _connect_plain(host: str, port: int) -> anyio.abc.SocketStream:
    """A TCP connection to an IP address: what ``anyio.connect_tcp`` does for one address, without the task group
    it runs its connection attempts in (Falco's web server is asked several times a second after a swap)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setblocking(False)
        try:
            try:
                sock.connect((host, port))
            except BlockingIOError:
                await anyio.wait_writable(sock)
                if error := sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    raise OSError(error, os.strerror(error)) from None
        except OSError as error:
            raise OSError("All connection attempts failed") from error  # as anyio says it (the cause chained)
        return await anyio.abc.SocketStream.from_socket(sock)
    except BaseException:
        sock.close()
        raise


@functools.lru_cache(maxsize=64)
def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_tls: ssl.SSLContext | None = None


def _default_tls() -> ssl.SSLContext:
    """Certifi's CA bundle, which httpx trusted by default: the same servers are trusted as before."""
    global _tls
    if _tls is None:
        import certifi

        _tls = ssl.create_default_context(cafile=certifi.where())
    return _tls


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
