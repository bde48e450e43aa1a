"""Real Falco in the harness: find the binary, run it over the agent's three directories, validate rules with it.

Falco runs with ``engine.kind: nodriver`` (no kernel driver, no root): it loads rules, config fragments and
plugins exactly as in a pod, hot-reloads on changes (``watch_config_files``), and serves ``/healthz`` and
Prometheus ``/metrics`` on a loopback port, including the SHA-256 of every rules file it loaded. That makes it
the oracle for what the agent delivers.

Where Falco comes from, in order: ``FALCO_BIN`` (and ``FALCO_CONTAINER_PLUGIN``); the build in
``../shared/falco/`` beside this checkout (development and CI here); otherwise the official release tarball,
downloaded once into ``~/.cache/falco-operator-e2e/falco-<version>/`` and checked against its published
SHA-256 (or ``FALCO_SHA256``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from ruamel.yaml import YAML

from falco_operator.instance.falcoconfig import base_config

from .controlplane.cluster import free_port
from .controlplane.processes import die_with_parent, terminate
from .wait import wait_for

Json = dict[str, Any]
ROOT = Path(__file__).resolve().parents[1]
SHARED_FALCO = ROOT.parent / "shared" / "falco"
FALCO_VERSION = "0.44.1"
CONTAINER_PLUGIN_VERSION = "0.7.1"
RELEASES = "https://download.falco.org"
RELOAD_LINE = "SIGHUP received, restarting"
RELOAD_FAILURE_LINE = "hot restart failure"
RULES_METRIC = "falcosecurity_falco_sha256_rules_files_info"
CONFIG_METRIC = "falcosecurity_falco_sha256_config_files_info"


@dataclass(frozen=True)
class FalcoBinaries:
    falco: Path
    container_plugin: Path
    source: str
    """``FALCO_BIN``, ``shared`` or ``download``."""


def find_falco() -> FalcoBinaries:
    configured = os.environ.get("FALCO_BIN")
    if configured:
        plugin = os.environ.get("FALCO_CONTAINER_PLUGIN") or str(SHARED_FALCO / "plugins" / "libcontainer.so")
        return FalcoBinaries(Path(configured), Path(plugin), "FALCO_BIN")
    shared = SHARED_FALCO / "bin" / "falco"
    if shared.is_file():
        return FalcoBinaries(shared, SHARED_FALCO / "plugins" / "libcontainer.so", "shared")
    return _download()


def falco_version(binaries: FalcoBinaries | None = None) -> str:
    binary = (binaries or find_falco()).falco
    output = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Falco version:\s*(\S+)", output)
    if not match:
        raise AssertionError(f"{binary} --version said: {output!r}")
    return match.group(1)


# -- download (users' machines) ---------------------------------------------------------------------------


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "falco-operator-e2e" / f"falco-{FALCO_VERSION}"


def _download() -> FalcoBinaries:
    arch = platform.machine()
    cache = _cache_dir()
    falco = cache / f"falco-{FALCO_VERSION}-{arch}" / "usr" / "bin" / "falco"
    plugin = cache / "plugins" / "libcontainer.so"
    if not falco.is_file():
        archive = f"falco-{FALCO_VERSION}-{arch}.tar.gz"
        _fetch_verified(f"{RELEASES}/packages/bin/{arch}/{archive}", cache, os.environ.get("FALCO_SHA256"))
    if not plugin.is_file():
        archive = f"container-{CONTAINER_PLUGIN_VERSION}-linux-{arch}.tar.gz"
        _fetch_verified(f"{RELEASES}/plugins/stable/{archive}", cache / "plugins", None)
    if not falco.is_file() or not plugin.is_file():
        raise RuntimeError(f"the Falco release in {cache} has no {falco.name} or libcontainer.so; set FALCO_BIN")
    return FalcoBinaries(falco, plugin, "download")


def _fetch_verified(url: str, into: Path, expected: str | None) -> None:
    into.mkdir(parents=True, exist_ok=True)
    archive = into / url.rsplit("/", 1)[1]
    try:
        if expected is None:
            with urllib.request.urlopen(f"{url}.sha256", timeout=60) as response:
                expected = response.read().decode().split()[0]
        urllib.request.urlretrieve(url, archive)
    except OSError as error:
        raise RuntimeError(
            f"cannot download {url} ({error}); set FALCO_BIN to a Falco {FALCO_VERSION} binary"
        ) from None
    actual = hashlib.sha256(archive.read_bytes()).hexdigest()
    if actual != expected:
        archive.unlink()
        raise RuntimeError(f"{url}: SHA-256 {actual} is not the published {expected}")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()


# -- configuration ----------------------------------------------------------------------------------------


def container_plugin_config(binaries: FalcoBinaries) -> Json:
    return {"name": "container", "library_path": str(binaries.container_plugin),
            "init_config": {"label_max_len": 100, "with_size": False}}  # fmt: skip


def falco_config(
    rules_dir: Path, config_dir: Path, web_port: int, *, binaries: FalcoBinaries, load_container_plugin: bool = False,
    extra: Json | None = None,
) -> Json:  # fmt: skip
    """The product's base falco.yaml (``nodriver``), pointed at these directories and a loopback port."""
    config = base_config("nodriver")
    config["rules_files"] = [str(rules_dir)]
    config["config_files"] = [str(config_dir)]
    config["webserver"] = config["webserver"] | {"listen_port": web_port, "listen_address": "127.0.0.1"}
    config |= {"log_stderr": True, "log_syslog": False, "log_level": "info"}
    if load_container_plugin:
        config["plugins"] = [container_plugin_config(binaries)]
        config["load_plugins"] = ["container"]
    return config | (extra or {})


def write_yaml(path: Path, value: Json) -> Path:
    writer = YAML(typ="safe", pure=True)
    writer.default_flow_style = False
    with path.open("w") as file:
        writer.dump(value, file)
    return path


# -- a running Falco --------------------------------------------------------------------------------------


def parse_sha256_metric(text: str, metric: str) -> dict[str, str]:
    """``{file_name: sha256}`` from Falco's Prometheus text for one of its ``*_sha256_*_info`` metrics."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith(metric + "{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        found[labels["file_name"]] = labels["sha256"]
    return found


@dataclass
class RunningFalco:
    process: subprocess.Popen[bytes]
    web_port: int
    log_path: Path
    config_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def reload_count(self) -> int:
        return self.log().count(RELOAD_LINE)

    def reload_failures(self) -> int:
        return self.log().count(RELOAD_FAILURE_LINE)

    def alive(self) -> bool:
        return self.process.poll() is None

    async def get(self, path: str) -> httpx.Response:
        # One short-lived client per call: the fixture is a plain context manager, with no async close.
        async with httpx.AsyncClient(timeout=5) as http:
            return await http.get(f"http://127.0.0.1:{self.web_port}{path}")

    async def metrics(self) -> str:
        response = await self.get("/metrics")
        response.raise_for_status()
        return response.text

    async def rules_hashes(self) -> dict[str, str]:
        return parse_sha256_metric(await self.metrics(), RULES_METRIC)

    async def config_hashes(self) -> dict[str, str]:
        return parse_sha256_metric(await self.metrics(), CONFIG_METRIC)

    async def _answering(self) -> bool:
        if not self.alive():
            raise AssertionError(f"Falco exited ({self.process.returncode}):\n{self.log()[-4000:]}")
        try:
            return (await self.get("/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    async def wait_healthy(self, timeout: float = 30) -> None:
        await wait_for(self._answering, bool, timeout=timeout, interval=0.05, what="Falco's /healthz")

    async def wait_reloaded(self, after: int, timeout: float = 30) -> int:
        """Wait for a hot restart beyond ``after`` and for the web server to answer again; the new count."""

        async def count() -> int:
            return self.reload_count()

        reloaded = await wait_for(count, lambda seen: seen > after, timeout=timeout, interval=0.05,
                                  what=f"a Falco reload after {after}")  # fmt: skip
        await self.wait_healthy(timeout)
        return reloaded

    async def wait_rules(self, expected: dict[str, str], timeout: float = 30) -> None:
        """Wait until Falco reports exactly ``expected`` (file name → sha256) as its loaded rules files."""

        async def loaded() -> dict[str, str] | None:
            try:
                return await self.rules_hashes() if await self._answering() else None
            except httpx.HTTPError:
                return None

        await wait_for(loaded, lambda seen: seen == expected, timeout=timeout, interval=0.1,
                       what=f"Falco loading {sorted(expected)}")  # fmt: skip


@contextmanager
def run_falco(
    workdir: Path, rules_dir: Path, config_dir: Path, plugins_dir: Path, *, load_container_plugin: bool = False,
    extra_config: Json | None = None, binaries: FalcoBinaries | None = None, web_port: int | None = None,
) -> Iterator[RunningFalco]:  # fmt: skip
    """Run Falco over the three directories until the block ends. Callers wait with ``wait_healthy``.

    ``plugins_dir`` is where plugin libraries are (library paths in config fragments point into it).
    """
    binaries = binaries or find_falco()
    workdir.mkdir(parents=True, exist_ok=True)
    for directory in (rules_dir, config_dir, plugins_dir):
        directory.mkdir(parents=True, exist_ok=True)
    port = web_port or free_port()
    config = falco_config(rules_dir, config_dir, port, binaries=binaries, load_container_plugin=load_container_plugin,
                          extra=extra_config)  # fmt: skip
    config_path = write_yaml(workdir / "falco.yaml", config)
    log_path = workdir / "falco.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen([str(binaries.falco), "-c", str(config_path)], stdout=log, stderr=subprocess.STDOUT,
                                   cwd=workdir, preexec_fn=die_with_parent)  # fmt: skip
    running = RunningFalco(process, port, log_path, config_path)
    try:
        yield running
    finally:
        terminate(process)


# -- validation -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FalcoVerdict:
    successful: bool
    results: list[Json]
    """One per file: ``name``, ``successful``, ``errors`` and ``warnings`` (each with ``code``, ``message``,
    ``context.locations[].position`` with ``name``, ``line`` and ``column``, counted from 0)."""
    raw: Json
    failure: str | None = None
    """Falco's error when it stopped before giving a per-file verdict."""

    def error_codes(self) -> list[str]:
        return [error["code"] for result in self.results for error in result.get("errors") or []]

    def error_lines(self) -> list[tuple[str, int]]:
        """(file, 1-based line) of each error's innermost location in a file (Falco counts lines from 0)."""
        found = []
        for result in self.results:
            for error in result.get("errors") or []:
                positions = [location.get("position") or {} for location in
                             (error.get("context") or {}).get("locations") or []]  # fmt: skip
                in_files = [p for p in positions if not str(p.get("name", "")).startswith('"')]
                if in_files:
                    found.append((str(in_files[-1].get("name")), int(in_files[-1].get("line", 0)) + 1))
        return found


def validate_rules(
    files: Sequence[Path], *, binaries: FalcoBinaries | None = None, load_container_plugin: bool = True,
    workdir: Path | None = None,
) -> FalcoVerdict:  # fmt: skip
    """``falco -V`` over ``files`` in this order (as a rules directory loads them), with JSON output."""
    binaries = binaries or find_falco()
    directory = workdir or Path(os.environ.get("TMPDIR", "/tmp"))
    config = base_config("nodriver") | {"rules_files": [], "config_files": [], "log_stderr": True,
                                        "log_syslog": False}  # fmt: skip
    config["webserver"] = config["webserver"] | {"enabled": False}
    if load_container_plugin:
        config |= {"plugins": [container_plugin_config(binaries)], "load_plugins": ["container"]}
    config_path = write_yaml(directory / f"falco-validate-{os.getpid()}-{time.monotonic_ns()}.yaml", config)
    try:
        command = [str(binaries.falco), "-c", str(config_path), "-o", "json_output=true"]
        for path in files:
            command += ["-V", str(path)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        config_path.unlink()
    raw = _last_json_object(result.stdout)
    if raw is None:
        # Falco stops before loading any file for some errors (a required plugin that is not loaded): no JSON.
        errors = [line.removeprefix("Error: ") for line in result.stderr.splitlines() if line.startswith("Error: ")]
        if result.returncode == 0 or not errors:
            raise AssertionError(
                f"falco -V gave no verdict (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return FalcoVerdict(False, [], {}, errors[-1])
    results = list(raw.get("falco_load_results") or [])
    return FalcoVerdict(result.returncode == 0 and all(r.get("successful") for r in results), results, raw)


def _last_json_object(text: str) -> Json | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m e2e.falco check``: print the Falco found and validate the default rules with it."""
    args = argv if argv is not None else sys.argv[1:]
    if args != ["check"]:
        print("usage: python -m e2e.falco check", file=sys.stderr)
        return 2
    binaries = find_falco()
    print(f"Falco {falco_version(binaries)} from {binaries.source}: {binaries.falco}")
    print(f"container plugin: {binaries.container_plugin}")
    rules = SHARED_FALCO.parent / "testdata" / "falco-rules" / "falco_rules.yaml"
    verdict = validate_rules([rules], binaries=binaries)
    for result in verdict.results:
        print(f"{result.get('name')}: {'Ok' if result.get('successful') else 'Invalid'}")
    return 0 if verdict.successful else 1


if __name__ == "__main__":
    sys.exit(main())
