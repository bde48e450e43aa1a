"""A minimal HTTP server for ``/metrics``, ``/healthz`` and ``/readyz`` (GET only, one response per connection)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import anyio.abc

from .promtext import CONTENT_TYPE, Registry, exposition

log = logging.getLogger("falco_operator.kube.endpoints")

Handler = Callable[[], tuple[int, str, bytes]]
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
            503: "Service Unavailable"}  # fmt: skip


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``:port`` (all interfaces)."""
    host, _, port = address.rpartition(":")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def metrics_handler(registry: Registry) -> Handler:
    return lambda: (200, CONTENT_TYPE, exposition(registry))


def probe_handler(check: Callable[[], bool], what: str) -> Handler:
    def handle() -> tuple[int, str, bytes]:
        ok = check()
        return (200 if ok else 503), "text/plain; charset=utf-8", (b"ok" if ok else f"{what} not ready".encode())

    return handle


class HttpEndpoints:
    def __init__(self, address: str, routes: dict[str, Handler]) -> None:
        self.host, self.port = parse_address(address)
        self.routes = routes

    async def run(self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; reports the bound port once listening."""
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port, reuse_port=False)
        async with listener:
            sockets = listener.listeners
            port = sockets[0].extra(anyio.abc.SocketAttribute.local_port) if sockets else self.port
            task_status.started(port)
            await listener.serve(self._serve)

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(10):
                    head = b""
                    while b"\r\n\r\n" not in head and len(head) < 16384:
                        head += await stream.receive(4096)
                    method, path = _request_line(head)
                    status, content_type, body = self._respond(method, path)
                    header = (
                        f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                    )
                    await stream.send(header.encode() + (body if method != "HEAD" else b""))
            except (TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, OSError, ValueError):
                return

    def _respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed"
        handler = self.routes.get(path.split("?", 1)[0])
        if handler is None:
            return 404, "text/plain", b"not found"
        try:
            return handler()
        except Exception:
            log.exception("handler for %s failed", path)
            return 500, "text/plain", b"internal error"


def _request_line(head: bytes) -> tuple[str, str]:
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    if len(parts) < 2:
        raise ValueError(f"bad request line {line!r}")
    return parts[0].upper(), parts[1]
