"""The project's HTTP/1.1 client against real loopback servers: plain and TLS, kept-alive, chunked, stalled, cut."""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.streams.tls import TLSListener
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from falco_operator.kube.http import (
    ConnectError,
    HttpClient,
    ProtocolError,
    TimedOut,
    Timeouts,
    _Connection,
    _is_address,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


pytestmark = pytest.mark.anyio


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    connection: int
    """Which accepted connection carried it (0, 1, ...)."""


Handler = Callable[[Request, anyio.abc.ByteStream], Awaitable[bool]]
"""Writes the response; returns whether the connection stays open for another request."""


@dataclass
class Server:
    port: int
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    closed: int = 0
    """Connections that ended (the client closed them, or the handler did)."""

    def url(self, path: str = "", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


async def read_request(stream: anyio.abc.ByteStream, buffer: bytearray) -> tuple[str, str, dict[str, str], bytes]:
    while b"\r\n\r\n" not in buffer:
        buffer += await stream.receive()
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += await stream.receive()
    buffer[:] = rest[length:]
    return method, target, headers, rest[:length]


@asynccontextmanager
async def serve(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    listener: anyio.abc.Listener[anyio.abc.ByteStream] = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server = Server(port=listener.extra(anyio.abc.SocketAttribute.local_port))
    if tls is not None:
        listener = TLSListener(listener, tls, standard_compatible=False)

    async def connection(stream: anyio.abc.ByteStream) -> None:
        number, server.connections = server.connections, server.connections + 1
        buffer = bytearray()
        try:
            async with stream:
                while True:
                    method, target, headers, body = await read_request(stream, buffer)
                    request = Request(method, target, headers, body, number)
                    server.requests.append(request)
                    if not await handler(request, stream):
                        return
        except (anyio.EndOfStream, anyio.BrokenResourceError, ssl.SSLError, OSError):
            pass
        finally:
            server.closed += 1

    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, connection)
        try:
            yield server
        finally:
            group.cancel_scope.cancel()


def response(body: bytes, status: str = "200 OK", headers: dict[str, str] | None = None) -> bytes:
    fields = {"Content-Type": "application/json", "Content-Length": str(len(body))} | (headers or {})
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def echo(request: Request, stream: anyio.abc.ByteStream) -> bool:
    described = {"method": request.method, "target": request.target, "headers": request.headers,
                 "body": request.body.decode(), "connection": request.connection}  # fmt: skip
    await stream.send(response(json.dumps(described).encode()))
    return True


async def test_kept_alive_connections_carry_the_next_requests() -> None:
    async with serve(echo) as server, HttpClient(server.url()) as http:
        first = await http.get("/one")
        second = await http.request("POST", "/two", params={"labelSelector": "a=b,c in (x y)"},
                                    headers={"Content-Type": "text/plain"}, content="héllo")  # fmt: skip
        assert (first.status_code, first.headers["content-type"]) == (200, "application/json")
        assert first.json()["target"] == "/one"
        said = second.json()
        assert (said["method"], said["body"], said["connection"]) == ("POST", "héllo", 0)
        assert said["target"] == "/two?labelSelector=a%3Db%2Cc+in+%28x+y%29"
        assert said["headers"]["content-length"] == str(len("héllo".encode()))
        assert said["headers"]["host"] == f"127.0.0.1:{server.port}"
        assert server.connections == 1
        assert http.idle_connections() == 1


async def test_absolute_urls_and_base_paths_reach_their_origin() -> None:
    async with serve(echo) as server:
        async with HttpClient(server.url("/prefix/")) as http:
            assert (await http.get("/api")).json()["target"] == "/prefix/api"
        async with HttpClient() as http:
            assert (await http.get(server.url("/metrics"))).json()["target"] == "/metrics"


async def test_a_chunked_stream_is_read_line_by_line() -> None:
    events = [json.dumps({"type": "ADDED", "n": n}).encode() for n in range(3)]

    async def watch(request: Request, stream: anyio.abc.ByteStream) -> bool:
        await stream.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        wire = b"\n".join(events) + b"\n"
        for piece in (wire[:5], wire[5:40], wire[40:]):  # lines cut across chunks
            await stream.send(chunk(piece))
            await anyio.sleep(0.01)
        await stream.send(b"0\r\n\r\n")
        return True

    async with serve(watch) as server, HttpClient(server.url()) as http:
        async with http.open("GET", "/watch", stream=True) as streamed:
            lines = [line async for line in streamed.aiter_lines()]
        assert [json.loads(line)["n"] for line in lines] == [0, 1, 2]
        assert http.idle_connections() == 1, "a stream read to its end leaves its connection for reuse"


async def test_gzip_bodies_are_asked_for_and_decoded() -> None:
    async def gzipped(request: Request, stream: anyio.abc.ByteStream) -> bool:
        assert request.headers["accept-encoding"] == "gzip"
        plain = b'{"items": []}' if request.target == "/list" else b'{"items": []}\n{"more": 1}'
        await stream.send(response(gzip.compress(plain), headers={"Content-Encoding": "gzip"}))
        return True

    async with serve(gzipped) as server, HttpClient(server.url()) as http:
        assert (await http.get("/list")).json() == {"items": []}
        async with http.open("GET", "/lines", stream=True) as streamed:
            assert [line async for line in streamed.aiter_lines()] == ['{"items": []}', '{"more": 1}']


async def test_connection_close_is_honoured() -> None:
    async def closing(request: Request, stream: anyio.abc.ByteStream) -> bool:
        await stream.send(response(b"{}", headers={"Connection": "close"}))
        return False

    async with serve(closing) as server, HttpClient(server.url()) as http:
        for _ in range(3):
            assert (await http.get("/")).status_code == 200
        assert http.idle_connections() == 0
        assert server.connections == 3


async def test_a_kept_alive_connection_the_server_closed_is_replaced() -> None:
    async def answer_then_hang_up(request: Request, stream: anyio.abc.ByteStream) -> bool:
        await stream.send(response(b"{}"))  # says nothing of closing, then closes (an idle timeout)
        return False

    async with serve(answer_then_hang_up) as server, HttpClient(server.url()) as http:
        for _ in range(3):
            assert (await http.get("/")).status_code == 200
            await anyio.sleep(0.05)
        assert server.connections == 3


async def test_a_closed_connection_that_looked_alive_is_retried_for_idempotent_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server may close an idle connection just as a request goes out on it: a GET is sent again on a new
    connection, a POST (which may not be repeated) fails."""

    async def answer_then_hang_up(request: Request, stream: anyio.abc.ByteStream) -> bool:
        await stream.send(response(b"{}"))
        return False

    monkeypatch.setattr(_Connection, "reusable", lambda self, expiry: True)  # the race: no sign of the close yet
    async with serve(answer_then_hang_up) as server, HttpClient(server.url()) as http:
        for _ in range(2):
            await http.get("/")
            await wait_until(lambda: server.closed == server.connections)
        assert server.connections == 2
        await http.get("/")
        await wait_until(lambda: server.closed == server.connections)
        with pytest.raises(ProtocolError, match="closed"):
            await http.request("POST", "/", content="{}")
        assert server.connections == 3


async def test_exchanges_beyond_the_connection_limit_wait_for_a_free_one() -> None:
    async with serve(stall_after_one_line) as server, HttpClient(server.url(), max_connections=1) as http:
        async with http.open("GET", "/watch", stream=True):
            with pytest.raises(TimedOut, match="no free connection"):
                await http.get("/", timeout=0.3)
        assert (await http.get("/")).status_code == 200


async def test_idle_connections_expire() -> None:
    async with serve(echo) as server, HttpClient(server.url(), keepalive_expiry=0.1) as http:
        await http.get("/")
        await anyio.sleep(0.2)
        assert (await http.get("/")).json()["connection"] == 1


async def stall_after_one_line(request: Request, stream: anyio.abc.ByteStream) -> bool:
    if request.target == "/hang":
        with anyio.move_on_after(30):
            await stream.receive()
        return False
    if request.target == "/watch":
        await stream.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b'{"n": 0}\n'))
        with anyio.move_on_after(30):
            await stream.receive()  # ends (EndOfStream) when the client closes the connection
        return False
    return await echo(request, stream)


async def test_a_stalled_stream_hits_the_read_timeout_and_its_connection_is_dropped() -> None:
    async with serve(stall_after_one_line) as server, HttpClient(server.url()) as http:
        await http.get("/")  # a kept-alive connection the watch reuses
        lines: list[str] = []

        async def watch() -> None:
            async with http.open("GET", "/watch", stream=True, timeout=Timeouts(5, 0.3, 5)) as streamed:
                async for line in streamed.aiter_lines():
                    lines.append(line)

        with anyio.fail_after(5), pytest.raises(TimedOut, match=r"no response bytes for 0\.3 s"):
            await watch()
        assert lines == ['{"n": 0}']
        assert http.idle_connections() == 0
        assert (await http.get("/")).json()["connection"] == 1, "a fresh connection after the stalled one"


async def test_cancelling_a_stream_leaves_the_pool_healthy() -> None:
    async with serve(stall_after_one_line) as server, HttpClient(server.url()) as http:
        with anyio.move_on_after(0.3) as scope:
            async with http.open("GET", "/watch", stream=True) as streamed:
                async for _ in streamed.aiter_lines():
                    pass
        assert scope.cancelled_caught
        assert http.idle_connections() == 0
        await wait_until(lambda: server.closed == 1)  # the client closed the cancelled connection
        first, second = await http.get("/"), await http.get("/")
        assert (first.json()["connection"], second.json()["connection"]) == (1, 1)


async def test_a_request_abandoned_before_its_answer_leaves_the_pool_healthy() -> None:
    """As the leader elector abandons a renewal that hangs: the kept-alive connection it hung on is not reused."""
    async with serve(stall_after_one_line) as server, HttpClient(server.url()) as http:
        await http.get("/")
        with anyio.move_on_after(0.3) as scope:
            await http.get("/hang")
        assert scope.cancelled_caught
        assert http.idle_connections() == 0
        assert (await http.get("/")).json()["connection"] == 1


async def test_leaving_a_stream_early_closes_its_connection() -> None:
    async def endless(request: Request, stream: anyio.abc.ByteStream) -> bool:
        if request.target != "/watch":
            return await echo(request, stream)
        await stream.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            await stream.send(chunk(b'{"tick": 1}\n'))
            await anyio.sleep(0.01)

    async with serve(endless) as server, HttpClient(server.url()) as http:
        async with http.open("GET", "/watch", stream=True) as streamed:
            async for _ in streamed.aiter_lines():
                break
        assert http.idle_connections() == 0
        await wait_until(lambda: server.closed == 1)
        assert (await http.get("/")).json()["connection"] == 1


async def test_a_body_cut_short_is_a_protocol_error() -> None:
    async def cut(request: Request, stream: anyio.abc.ByteStream) -> bool:
        await stream.send(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial"')
        return False

    async with serve(cut) as server, HttpClient(server.url()) as http:
        with pytest.raises(ProtocolError):
            await http.get("/")
        assert http.idle_connections() == 0


async def test_garbage_is_a_protocol_error() -> None:
    async def garbage(request: Request, stream: anyio.abc.ByteStream) -> bool:
        await stream.send(b"SSH-2.0-OpenSSH\r\n\r\n")
        return False

    async with serve(garbage) as server, HttpClient(server.url()) as http:
        with pytest.raises(ProtocolError):
            await http.get("/")


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with serve(echo) as server:
        port = server.port
    for host in ("127.0.0.1", "localhost"):  # an address is connected to directly, a name through anyio
        async with HttpClient(f"http://{host}:{port}") as http:
            with pytest.raises(
                ConnectError, match=rf"cannot connect to {host}:{port}: OSError: All connection attempts"
            ):
                await http.get("/")


async def test_an_address_and_a_host_name_reach_the_same_server_with_nodelay() -> None:
    async with serve(echo) as server:
        for host in ("127.0.0.1", "localhost"):
            async with HttpClient(f"http://{host}:{server.port}") as http:
                assert (await http.get("/x")).json()["target"] == "/x"
                [(connection,)] = [tuple(idle) for idle in http._idle.values()]
                sock = connection.stream.extra(anyio.abc.SocketAttribute.raw_socket)
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert server.connections == 2


async def test_a_timed_out_connect_to_an_address_is_timed_out() -> None:
    # 192.0.2.1 (TEST-NET-1) is never routed: the connection attempt hangs (or fails at once without a route).
    async with HttpClient("http://192.0.2.1:9", timeout=0.2) as http:
        with pytest.raises((TimedOut, ConnectError)):
            await http.get("/")
        assert http.idle_connections() == 0


class CountedWrites(anyio.abc.ByteStream):
    """A real connection whose writes are recorded."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.writes: list[bytes] = []

    async def send(self, item: bytes) -> None:
        self.writes.append(item)
        await self.stream.send(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.stream.receive(max_bytes)

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def test_a_request_head_and_body_go_out_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    streams: list[CountedWrites] = []
    connect = HttpClient._connect

    async def counted(self: HttpClient, origin: tuple[str, str, int], timeout: float) -> anyio.abc.ByteStream:
        streams.append(CountedWrites(await connect(self, origin, timeout)))
        return streams[-1]

    monkeypatch.setattr(HttpClient, "_connect", counted)
    async with serve(echo) as server, HttpClient(server.url()) as http:
        said = (await http.request("PATCH", "/x", content='{"status": {}}')).json()
        assert (await http.get("/y")).json()["target"] == "/y"
    assert said["body"] == '{"status": {}}'
    writes = [write for stream in streams for write in stream.writes]
    assert len(writes) == 2
    assert writes[0].startswith(b"PATCH /x HTTP/1.1\r\n")
    assert writes[0].endswith(b'\r\n\r\n{"status": {}}')
    assert writes[1].startswith(b"GET /y HTTP/1.1\r\n")


async def test_a_connection_closes_at_once_even_in_a_cancelled_scope() -> None:
    async with serve(echo) as server:
        stream = await anyio.connect_tcp("127.0.0.1", server.port)
        connection = _Connection(stream)
        finished = False
        with anyio.CancelScope() as scope:
            scope.cancel()
            await connection.close()  # neither raises the cancellation nor waits for the server
            finished = True
        assert finished
        with pytest.raises(anyio.ClosedResourceError):
            await stream.send(b"GET / HTTP/1.1\r\n\r\n")


def test_only_ip_addresses_skip_the_name_lookup() -> None:
    assert [_is_address(host) for host in ("127.0.0.1", "::1", "10.1.2.3")] == [True, True, True]
    assert [_is_address(host) for host in ("localhost", "falco.example", "")] == [False, False, False]


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server: ssl.SSLContext


def make_pki(directory: Path, *, with_address: bool = True) -> Pki:
    """A CA and a server certificate for ``localhost`` (and 127.0.0.1 ``with_address``)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    if with_address:
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    certificate = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    ca_file, cert_file, key_file = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return Pki(ca_file, server)


async def test_tls_verifies_dns_names_and_ip_addresses_with_the_given_context(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    trusting = ssl.create_default_context(cafile=str(pki.ca_file))
    async with serve(echo, tls=pki.server) as server:
        for host in ("localhost", "127.0.0.1"):
            async with HttpClient(server.url(host=host, scheme="https"), ssl_context=trusting) as http:
                said = [(await http.get("/")).json()["connection"] for _ in range(2)]
                assert said[0] == said[1], "the TLS connection is kept alive"
        async with HttpClient(server.url(host="127.0.0.1", scheme="https")) as http:
            with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get("/")  # certifi's bundle does not know the test CA


async def test_tls_refuses_an_address_the_certificate_does_not_carry(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, with_address=False)
    trusting = ssl.create_default_context(cafile=str(pki.ca_file))
    async with serve(echo, tls=pki.server) as server:
        async with HttpClient(server.url(host="localhost", scheme="https"), ssl_context=trusting) as http:
            assert (await http.get("/")).status_code == 200
        async with HttpClient(server.url(host="127.0.0.1", scheme="https"), ssl_context=trusting) as http:
            with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get("/")


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 (the server's counters have no event to wait on)
            await anyio.sleep(0.01)
