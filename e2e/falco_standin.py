"""A stand-in for Falco's web server where many nodes are simulated: it reads a rules directory as Falco loads
it (visible, resolvable files) and serves the same ``/metrics`` sample and ``/versions`` as Falco 0.44.1.

Only where real Falco would be too much (tens of nodes on two cores); one node of such a test runs real Falco.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import anyio.abc

from falco_operator.kube.endpoints import HttpEndpoints

from .controlplane.cluster import free_port


class FalcoStandIn:
    def __init__(
        self, rules_dir: Path, version: str = "0.44.1", plugins: dict[str, str] | None = None, answer_after: float = 0.0
    ) -> None:
        self.rules_dir = rules_dir
        self.version = version
        self.plugins = plugins or {}
        self.answer_after = answer_after
        """Seconds a new set of files takes to show in ``/metrics`` once seen there (a slow reload)."""
        self.port = free_port()
        self._last_loaded: dict[str, str] | None = None
        self._reloaded_ns = time.time_ns()
        self._seen: dict[str, str] | None = None
        self._seen_at = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def loaded(self) -> dict[str, str]:
        found: dict[str, str] = {}
        if not self.rules_dir.is_dir():
            return found
        for entry in sorted(self.rules_dir.iterdir()):
            if entry.name.startswith(".."):
                continue
            try:
                found[entry.name] = hashlib.sha256(entry.read_bytes()).hexdigest()
            except FileNotFoundError:
                continue
        return found

    def _metrics(self) -> tuple[int, str, bytes]:
        on_disk = self.loaded()
        if on_disk != self._seen:
            self._seen, self._seen_at = on_disk, time.monotonic()
        due = self._last_loaded is None or time.monotonic() - self._seen_at >= self.answer_after
        if on_disk != self._last_loaded and due:  # as Falco's hot reload does, a new set of files moves the timestamp
            self._last_loaded, self._reloaded_ns = on_disk, time.time_ns()
        loaded = self._last_loaded or {}
        lines = [f'falcosecurity_falco_sha256_rules_files_info{{file_name="{name}",sha256="{digest}"}} 1'
                 for name, digest in loaded.items()]  # fmt: skip
        lines.append(f"falcosecurity_falco_reload_timestamp_nanoseconds {self._reloaded_ns}")
        return 200, "text/plain; version=0.0.4", ("\n".join(lines) + "\n").encode()

    def _versions(self) -> tuple[int, str, bytes]:
        body = {"falco_version": self.version, "plugin_versions": self.plugins}
        return 200, "application/json", json.dumps(body).encode()

    async def run(self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        routes = {"/metrics": self._metrics, "/versions": self._versions,
                  "/healthz": lambda: (200, "application/json", b'{"status": "ok"}')}  # fmt: skip
        await HttpEndpoints(f"127.0.0.1:{self.port}", routes).run(task_status=task_status)
