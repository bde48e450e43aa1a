"""Which network addresses the agent may reach for a registry, and a connection layer that holds to it.

An artifact names its registry, and the registry names its token realm and where its blobs are redirected: all
chosen by whoever writes an artifact or runs a registry. Without a check, the agent on every node would fetch
whatever URL they point it at, from inside the cluster: the cloud metadata service (169.254.169.254), the
kubelet, the API server, any Service. So by default every connection goes only to public (globally routable
unicast) addresses; ``allow_private`` lifts this for clusters whose registry is inside (the operator's and the
agent's ``--allow-private-registries``).

The check is made where connections are opened: the host name is resolved once, every address it resolves to
is checked, and the connection goes to one of the checked addresses (TLS still verifies the name). A name that
resolves to a public address for the check and to a private one for the connection (DNS rebinding) therefore
cannot get through, and redirects and token realms pass the same check.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import anyio
import httpcore

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
"""Local-use NAT64 (RFC 8215): where the IPv4 address sits depends on the network's prefix length, and it may be any
address of that network, so the whole range is refused."""
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
"""Deprecated IPv4-compatible addresses (``::a.b.c.d``): a stack that still honours them sends to a.b.c.d."""
ALLOW_FLAG = "--allow-private-registries"


class AddressRefused(Exception):
    """A registry, token realm or redirect resolves to an address the agent may not reach."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message)
        self.host = host
        self.message = message


def refusal(address: IPAddress) -> str | None:
    """Why the agent may not connect to ``address`` by default (None: a public unicast address)."""
    if address in _LOCAL_NAT64:
        return "a local-use NAT64 address (it reaches IPv4 addresses of the network)"
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return refusal(embedded)
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (such as the cloud metadata service)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a non-public address"
    return None


def check_addresses(host: str, addresses: Iterable[str]) -> list[str]:
    """The addresses, when every one is public; else ``AddressRefused`` naming the first that is not."""
    checked = []
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        why = refusal(address)
        if why is not None:
            shown = host if host == text else f"{host} ({text})"
            raise AddressRefused(host, f"{shown} is {why}; the agent reaches registries and token services only "
                                       f"at public addresses unless it runs with {ALLOW_FLAG}")  # fmt: skip
        checked.append(text)
    if not checked:
        raise AddressRefused(host, f"{host} resolves to no address")
    return checked


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, for TCP."""
    answers = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(answer[4][0]) for answer in answers))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network layer with the address check: resolve, check every address, connect to a checked one."""

    def __init__(self, allow_private: bool = False, resolver: Resolver = resolve) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private
        self._resolve = resolver

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # fmt: skip
        if self._allow_private:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            with anyio.fail_after(timeout):
                addresses = check_addresses(host, await self._resolve(host, port))
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took longer than {timeout} s") from None
        except OSError as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from None
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last = error
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused(path, "registries are reached over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_pool(ssl_context: ssl.SSLContext, allow_private: bool) -> httpcore.AsyncConnectionPool:
    """A connection pool whose every connection passes the address check (httpx's defaults otherwise)."""
    return httpcore.AsyncConnectionPool(
        ssl_context=ssl_context, max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0,
        network_backend=GuardedBackend(allow_private),
    )  # fmt: skip


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, IPv4-compatible), where it really goes."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):  # not :: nor ::1
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None
