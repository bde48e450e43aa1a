"""A TCP proxy in front of the API server whose behaviour a test switches: pass, refuse, or stall.

``refuse`` closes every connection at once (a client sees fast failures); ``stall`` accepts and never answers (a
client's request hangs until its own timeout). Switching mode drops the connections that are open, so a client's
kept-alive connection cannot slip past. ``freeze_open`` instead stalls only the connections open now, leaving them
open: the next request a client sends on a kept-alive connection hangs, and a new connection passes. TLS passes
through untouched: the server certificate names 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .controlplane.cluster import free_port

Mode = Literal["pass", "refuse", "stall"]


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream; a frozen link forwards nothing either way."""

    frozen: bool = False


class SwitchableProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.mode: Mode = "pass"
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._links: set[_Link] = set()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._serve, name="switchable-proxy", daemon=True)

    def __enter__(self) -> SwitchableProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _shutdown(self) -> None:
        """Close the listener and every connection, and let each handler finish, before the loop stops."""
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await self._server.wait_closed()
        await asyncio.sleep(0.05)  # closed transports release their sockets on the next loop iterations

    def switch(self, mode: Mode) -> None:
        """Take ``mode`` from now on, for new connections and by dropping every open one."""

        def apply() -> None:
            self.mode = mode
            for writer in list(self._writers):
                writer.close()
            self._writers.clear()

        self._loop.call_soon_threadsafe(apply)

    def freeze_open(self) -> None:
        """Stall every connection open now (it stays open and answers nothing); new ones follow the mode."""

        def apply() -> None:
            for link in self._links:
                link.frozen = True

        asyncio.run_coroutine_threadsafe(_call(apply), self._loop).result(10)

    def kubeconfig(self, original: Path, target: Path) -> Path:
        """A copy of ``original`` whose server is this proxy."""
        url = f"https://127.0.0.1:{self.port}"
        text, count = re.subn(r"https://127\.0\.0\.1:\d+", url, original.read_text())
        if count != 1:
            raise ValueError(f"{original}: expected one server at https://127.0.0.1, found {count}")
        target.write_text(text)
        return target

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            writer.close()
            return
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        link = _Link()
        try:
            if self.mode == "stall":
                while await reader.read(65536):
                    pass
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            self._writers.add(up_writer)
            self._links.add(link)
            await asyncio.gather(_pipe(reader, up_writer, link), _pipe(up_reader, writer, link),
                                 return_exceptions=True)  # fmt: skip
        except OSError:
            pass
        finally:
            self._links.discard(link)
            for each in (writer, up_writer):
                if each is not None:
                    self._writers.discard(each)
                    each.close()


async def _call(function: Callable[[], None]) -> None:
    function()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
    try:
        while data := await reader.read(65536):
            if link.frozen:
                continue
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
