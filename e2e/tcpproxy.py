"""A TCP proxy in front of the API server whose behaviour a test switches: pass, refuse, or stall.

``refuse`` closes every connection at once (a client sees fast failures); ``stall`` accepts and never answers (a
client's request hangs until its own timeout). Switching mode drops the connections that are open, so a client's
kept-alive connection cannot slip past. TLS passes through untouched: the server certificate names 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path
from typing import Literal

from .controlplane.cluster import free_port

Mode = Literal["pass", "refuse", "stall"]


class SwitchableProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.mode: Mode = "pass"
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
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
        try:
            if self.mode == "stall":
                while await reader.read(65536):
                    pass
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            self._writers.add(up_writer)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)
        except OSError:
            pass
        finally:
            for each in (writer, up_writer):
                if each is not None:
                    self._writers.discard(each)
                    each.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
