"""Real Falco in the harness: find the binary, run it over the agent's three directories, validate rules with it.

Falco runs with ``engine.kind: nodriver`` (no kernel driver, no root): it loads rules, config fragments and
plugins exactly as in a pod, hot-reloads on changes (``watch_config_files``), and serves ``/healthz`` and
Prometheus ``/metrics`` on a loopback port, including the SHA-256 of every rules file it loaded. That makes it
the oracle for what the agent delivers.

Where Falco comes from, in order: ``FALCO_BIN`` (and ``FALCO_CONTAINER_PLUGIN``); the build in
``../shared/falco/`` beside this checkout (development and CI here); otherwise the official release, downloaded
once into ``~/.cache/falco-operator-e2e/falco-<version>/`` and checked against a pinned SHA-256
(``e2e/falco_release.py``).
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from ruamel.yaml import YAML

from falco_operator.api import Engine
from falco_operator.artifacts.plugins import FALCO_PLUGINS_DIR
from falco_operator.instance.falcoconfig import base_config

from .controlplane.cluster import free_port
from .controlplane.processes import popen, terminate
from .falco_release import FalcoDownloadError, container_plugin_release, falco_release_binary
from .falco_verdict import FalcoVerdict, verdict_from_output
from .wait import wait_for

Json = dict[str, Any]
ROOT = Path(__file__).resolve().parents[1]
SHARED_FALCO = ROOT.parent / "shared" / "falco"
DEFAULT_RULES = ROOT.parent / "shared" / "testdata" / "falco-rules" / "falco_rules.yaml"
RELOAD_LINE = "SIGHUP received, restarting"
"""Logged by the running Falco when it restarts itself after a change (or a SIGHUP)."""
RELOAD_FAILURE_LINE = "Falco internal: hot restart failure"
"""The alert Falco emits when the dry run before a restart fails; it then keeps running what it had."""
RULES_METRIC = "falcosecurity_falco_sha256_rules_files_info"
CONFIG_METRIC = "falcosecurity_falco_sha256_config_files_info"
RELOAD_WITHIN = 1.0
"""Falco restarts about 0.3 s after a change (100 ms without events, a dry run, 100 ms again; more with big rule
sets, about 0.6 s with Falco's default rules): a change it reacts to at all, it reacts to within this."""


@dataclass(frozen=True)
class FalcoBinaries:
    falco: Path
    container_plugin: Path
    source: str
    """Where ``falco`` came from: ``FALCO_BIN``, ``shared`` or ``download``."""


def find_falco() -> FalcoBinaries:
    """Falco and its container plugin: ``FALCO_BIN``/``FALCO_CONTAINER_PLUGIN``, ../shared/falco, or a download."""
    configured = os.environ.get("FALCO_BIN")
    if configured:
        falco, source = _existing(configured, "FALCO_BIN"), "FALCO_BIN"
    elif (SHARED_FALCO / "bin" / "falco").is_file():
        falco, source = SHARED_FALCO / "bin" / "falco", "shared"
    else:
        falco, source = falco_release_binary(), "download"
    configured_plugin = os.environ.get("FALCO_CONTAINER_PLUGIN")
    if configured_plugin:
        plugin = _existing(configured_plugin, "FALCO_CONTAINER_PLUGIN")
    elif (SHARED_FALCO / "plugins" / "libcontainer.so").is_file():
        plugin = SHARED_FALCO / "plugins" / "libcontainer.so"
    else:
        plugin = container_plugin_release()
    return FalcoBinaries(falco, plugin, source)


def _existing(value: str, variable: str) -> Path:
    path = Path(value).expanduser().absolute()
    if not path.is_file():
        raise FileNotFoundError(f"{variable}={value}: no such file")
    return path


def falco_version(binaries: FalcoBinaries | None = None) -> str:
    """The version ``falco --version`` prints, such as ``0.44.1``."""
    binary = (binaries or find_falco()).falco
    output = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Falco version:\s*(\S+)", output)
    if not match:
        raise AssertionError(f"{binary} --version said: {output!r}")
    return match.group(1)


# -- configuration ----------------------------------------------------------------------------------------


def container_plugin_config(binaries: FalcoBinaries) -> Json:
    return {"name": "container", "library_path": str(binaries.container_plugin),
            "init_config": {"label_max_len": 100, "with_size": False}}  # fmt: skip


def falco_config(
    rules_dir: Path, config_dir: Path, web_port: int, *, binaries: FalcoBinaries, load_container_plugin: bool = False,
    extra: Json | None = None,
) -> Json:  # fmt: skip
    """The product's base falco.yaml (``nodriver``), pointed at these directories and a loopback port.

    ``extra`` is merged in last, mappings key by key (``{"webserver": {"threadiness": 1}}`` keeps the port).
    """
    config = base_config(Engine(kind="nodriver"))
    config["rules_files"] = [str(rules_dir)]
    config["config_files"] = [str(config_dir)]
    config["webserver"] = config["webserver"] | {"listen_port": web_port, "listen_address": "127.0.0.1"}
    # Logs to the captured stderr, not to syslog (which may not exist, or not be writable, here).
    config |= {"log_stderr": True, "log_syslog": False, "log_level": "info"}
    if load_container_plugin:
        config["plugins"] = [container_plugin_config(binaries)]
        config["load_plugins"] = ["container"]
    return _merged(config, extra or {})


def _merged(base: Json, extra: Json) -> Json:
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        merged[key] = _merged(current, value) if isinstance(current, dict) and isinstance(value, dict) else value
    return merged


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
    """The generated falco.yaml (``falco -c``)."""
    log_offset: int = 0
    """Where this run starts in ``log_path`` (a workdir used again appends to the same log)."""

    def log(self) -> str:
        with self.log_path.open("rb") as file:
            file.seek(self.log_offset)
            return file.read().decode(errors="replace")

    def _lines_with(self, text: str) -> int:
        # Per line: a JSON alert names the failure twice (rule and output), a multi-line one only on its first line.
        return sum(1 for line in self.log().splitlines() if text in line)

    def reload_count(self) -> int:
        """Hot restarts so far (``SIGHUP received, restarting...``): each is a full reload of config and rules."""
        return self._lines_with(RELOAD_LINE)

    def reload_failures(self) -> int:
        """Refused hot restarts so far (``Falco internal: hot restart failure: <why>``)."""
        return self._lines_with(RELOAD_FAILURE_LINE)

    def alive(self) -> bool:
        return self.process.poll() is None

    def _check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"Falco exited ({self.process.returncode}):\n{self.log()[-4000:]}")

    async def get(self, path: str) -> httpx.Response:
        # One short-lived client per call: the fixture is a plain context manager, with no async close.
        async with httpx.AsyncClient(timeout=5) as http:
            return await http.get(f"http://127.0.0.1:{self.web_port}{path}")

    async def metrics(self) -> str:
        response = await self.get("/metrics")
        response.raise_for_status()
        return response.text

    async def versions(self) -> Json:
        """``/versions``: Falco's, its engine's and (``plugin_versions``) every loaded plugin's version."""
        response = await self.get("/versions")
        response.raise_for_status()
        value: Json = response.json()
        return value

    async def rules_hashes(self) -> dict[str, str]:
        return parse_sha256_metric(await self.metrics(), RULES_METRIC)

    async def loaded_rules(self) -> dict[str, str] | None:
        """The rules files Falco reports loaded (file name → sha256), or None while it restarts: its web server
        then answers nothing, or 404 between the old run's handlers and the new run's."""
        self._check_alive()
        try:
            response = await self.get("/metrics")
        except httpx.HTTPError:
            return None
        return parse_sha256_metric(response.text, RULES_METRIC) if response.status_code == 200 else None

    async def config_hashes(self) -> dict[str, str]:
        """Only the main falco.yaml with Falco 0.44.1: fragments of a ``config_files`` directory are not listed."""
        return parse_sha256_metric(await self.metrics(), CONFIG_METRIC)

    async def _answering(self) -> bool:
        self._check_alive()
        try:
            return (await self.get("/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    async def wait_healthy(self, timeout: float = 30) -> None:
        await wait_for(self._answering, bool, timeout=timeout, interval=0.05, what="Falco's /healthz")

    async def wait_reloaded(self, after: int, timeout: float = 30) -> int:
        """Wait for a hot restart beyond ``after`` and for the web server to answer again; the new count."""

        async def count() -> int:
            self._check_alive()
            return self.reload_count()

        reloaded = await wait_for(count, lambda seen: seen > after, timeout=timeout, interval=0.05,
                                  what=f"a Falco reload after {after}")  # fmt: skip
        await self.wait_healthy(timeout)
        return reloaded

    async def wait_reload_failures(self, after: int, timeout: float = 30) -> int:
        """Wait for a refused hot restart beyond ``after``; the new count."""

        async def count() -> int:
            self._check_alive()
            return self.reload_failures()

        return await wait_for(count, lambda seen: seen > after, timeout=timeout, interval=0.05,
                              what=f"a refused Falco reload after {after}")  # fmt: skip

    async def expect_no_reload(self, beyond: int, within: float = RELOAD_WITHIN) -> None:
        """Fail as soon as a reload beyond ``beyond`` shows up in the next ``within`` seconds."""
        with anyio.move_on_after(within):
            while True:
                self._check_alive()
                if self.reload_count() > beyond:
                    raise AssertionError(f"unexpected reload after {beyond}:\n{self.log()[-3000:]}")
                await anyio.sleep(0.05)

    async def wait_rules(self, expected: dict[str, str], timeout: float = 30) -> None:
        """Wait until Falco reports exactly ``expected`` (file name → sha256) as its loaded rules files."""

        await wait_for(self.loaded_rules, lambda seen: seen == expected, timeout=timeout, interval=0.05,
                       what=f"Falco loading {sorted(expected)}")  # fmt: skip


@contextmanager
def run_falco(
    workdir: Path, rules_dir: Path, config_dir: Path, plugins_dir: Path, *, load_container_plugin: bool = False,
    extra_config: Json | None = None, binaries: FalcoBinaries | None = None, web_port: int | None = None,
    environment: Mapping[str, str] | None = None, image_plugins: Sequence[Path] | None = None,
    image: ImageLayout | None = None,
) -> Iterator[RunningFalco]:  # fmt: skip
    """Run Falco (``nodriver``) over the three directories until the block ends; it answers /healthz on entry.

    Starting blocks for about a second (Falco's start). ``plugins_dir`` is where plugin libraries are (library paths
    in config fragments point into it). ``environment`` is set for Falco over this process's environment (a pod's
    ``HOST_ROOT``, say). ``image_plugins``: libraries Falco finds in its own plugins directory, as in its image
    (``image_plugins_command``; needs root); ``image``: the image's files and the pod's volumes as well
    (``image_layout_command``; needs root). Falco gets SIGTERM at the end (SIGKILL if it lingers) and ends with
    the test process even when that is killed (``processes.popen``).
    """
    binaries = binaries or find_falco()
    # Falco runs in ``workdir``: every path it is given must hold from there.
    workdir, rules_dir, config_dir, plugins_dir = (path.absolute() for path in (workdir, rules_dir, config_dir,
                                                                                 plugins_dir))  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    for directory in (rules_dir, config_dir, plugins_dir):
        directory.mkdir(parents=True, exist_ok=True)
    port = web_port or free_port()
    config = falco_config(rules_dir, config_dir, port, binaries=binaries, load_container_plugin=load_container_plugin,
                          extra=extra_config)  # fmt: skip
    config_path = write_yaml(workdir / "falco.yaml", config)
    log_path = workdir / "falco.log"
    with log_path.open("ab") as log:
        offset = log.tell()
        env = {**os.environ, **environment} if environment is not None else None
        command = [str(binaries.falco), "-c", str(config_path)]
        if image is not None:
            command = image_layout_command(command, image, workdir / "image-layer")
        elif image_plugins is not None:
            command = image_plugins_command(command, image_plugins, workdir / "image-share")
        process = popen(command, stdout=log, cwd=workdir, env=env)
    running = RunningFalco(process, port, log_path, config_path, offset)
    try:
        _wait_started(running)
        yield running
    finally:
        terminate(process)


def image_plugins_command(command: Sequence[str], libraries: Sequence[Path], layer: Path) -> list[str]:
    """``command`` in a mount namespace of its own where ``FALCO_PLUGINS_DIR`` (/usr/share/falco/plugins, where
    Falco looks for a relative ``library_path``) holds ``libraries``, as an image's does: ``layer`` is laid over
    /usr/share (a read-only overlay), the host's /usr/share stays as it is. Needs root (CAP_SYS_ADMIN)."""
    share = "/usr/share"
    shutil.rmtree(layer, ignore_errors=True)
    plugins = layer / posixpath.relpath(FALCO_PLUGINS_DIR, share)
    plugins.mkdir(parents=True)
    for library in libraries:
        shutil.copyfile(library, plugins / library.name)
    # unshare execs sh, which execs the command: Falco keeps the PID popen watches.
    script = f'mount -t overlay overlay -o "lowerdir=$1:{share}" {share} && shift && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(layer), *command]


IMAGE_TREES = ("/usr/share", "/etc")
"""Where ``image_layout_command`` lays the image's files: read-only overlays over the host's trees."""


@dataclass(frozen=True)
class ImageLayout:
    """What Falco sees of its image and its pod, at the paths a pod has them: ``plugins``, libraries in its plugins
    directory (/usr/share/falco/plugins); ``files``, an image's file by its path (``/etc/falco/falco_rules.yaml``)
    → the file to show there; ``volumes``, a pod's volume by its mount path (``/etc/falco/rules.d``) → the
    directory to mount there (writes to it show through, as an emptyDir's do). Paths are under ``IMAGE_TREES``."""

    plugins: Sequence[Path] = ()
    files: Mapping[str, Path] = field(default_factory=dict)
    volumes: Mapping[str, Path] = field(default_factory=dict)


def image_layout_command(command: Sequence[str], image: ImageLayout, layer: Path) -> list[str]:
    """``command`` in a mount namespace of its own where ``image`` holds: ``layer`` gets the image's files and the
    volumes' mount points and is laid over each of ``IMAGE_TREES`` (read-only overlays), then each volume is
    bind-mounted at its path. The host's trees stay as they are. Needs root (CAP_SYS_ADMIN)."""
    shutil.rmtree(layer, ignore_errors=True)
    wanted = {posixpath.join(FALCO_PLUGINS_DIR, library.name): library for library in image.plugins} | dict(image.files)
    for path, source in wanted.items():
        target = _in_layer(layer, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    for path in image.volumes:
        _in_layer(layer, path).mkdir(parents=True, exist_ok=True)
    mounts = []
    for tree in IMAGE_TREES:
        lower = layer / tree.lstrip("/")
        lower.mkdir(parents=True, exist_ok=True)
        mounts.append(f"mount -t overlay overlay -o {shlex.quote(f'lowerdir={lower}:{tree}')} {tree}")
    mounts += [f"mount --bind {shlex.quote(str(source.absolute()))} {shlex.quote(path)}"
               for path, source in image.volumes.items()]  # fmt: skip
    # unshare execs sh, which execs the command: Falco keeps the PID popen watches.
    script = " && ".join([*mounts, 'exec "$@"'])
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command]


def _in_layer(layer: Path, path: str) -> Path:
    if not any(path.startswith(tree + "/") for tree in IMAGE_TREES):
        raise ValueError(f"{path}: the harness lays out only {', '.join(IMAGE_TREES)}")
    return layer / path.lstrip("/")


def _wait_started(falco: RunningFalco, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=1) as http:
        while time.monotonic() < deadline:
            falco._check_alive()
            try:
                response = http.get(f"http://127.0.0.1:{falco.web_port}/healthz")
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as error:
                last = repr(error)
            time.sleep(0.05)
    raise AssertionError(f"Falco's /healthz did not answer within {timeout:.0f}s ({last}):\n{falco.log()[-4000:]}")


# -- validation -------------------------------------------------------------------------------------------


def plugin_config(name: str, binaries: FalcoBinaries) -> Json:
    """The config entry of a published plugin by name: the container plugin of ``binaries``, the others from
    ../shared/falco/plugins (``lib<name>.so``) with empty configs, which is enough for ``-V`` (Falco initialises
    plugins there but does not open them)."""
    if name == "container":
        return container_plugin_config(binaries)
    library = SHARED_FALCO / "plugins" / f"lib{name}.so"
    if not library.is_file():
        raise FileNotFoundError(f"{library}: no such plugin library (see ../shared/falco/README.md)")
    return {"name": name, "library_path": str(library), "init_config": "", "open_params": ""}


def validate_rules(
    files: Sequence[Path], *, binaries: FalcoBinaries | None = None, load_container_plugin: bool = True,
    workdir: Path | None = None, plugins: Sequence[str] | None = None,
) -> FalcoVerdict:  # fmt: skip
    """``falco -c <generated config> -V f1 -V f2 ... -o json_output=true``: files load in this order, as in a
    rules directory; the container plugin is loaded (Falco's default rules require it), or exactly ``plugins``
    (names, ``plugin_config``) when given. The generated config lives in a temporary directory (under
    ``workdir`` if given) for the run."""
    binaries = binaries or find_falco()
    config = base_config(Engine(kind="nodriver")) | {"rules_files": [], "config_files": [], "log_stderr": True,
                                        "log_syslog": False}  # fmt: skip
    config["webserver"] = config["webserver"] | {"enabled": False}
    config["metrics"] = config["metrics"] | {"enabled": False}
    if plugins is not None:
        config |= {"plugins": [plugin_config(name, binaries) for name in plugins], "load_plugins": list(plugins)}
    elif load_container_plugin:
        config |= {"plugins": [container_plugin_config(binaries)], "load_plugins": ["container"]}
    with tempfile.TemporaryDirectory(prefix="falco-validate-", dir=workdir) as scratch:
        config_path = write_yaml(Path(scratch) / "falco.yaml", config)
        command = [str(binaries.falco), "-c", str(config_path), "-o", "json_output=true"]
        for path in files:
            command += ["-V", str(path)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    return verdict_from_output(result.returncode, result.stdout, result.stderr)


def main(argv: list[str] | None = None) -> int:
    """``python -m e2e.falco check``: print the Falco found and validate Falco's default rules with it."""
    args = argv if argv is not None else sys.argv[1:]
    if args != ["check"]:
        print("usage: python -m e2e.falco check", file=sys.stderr)
        return 2
    try:
        binaries = find_falco()
    except (OSError, FalcoDownloadError) as error:
        print(f"no Falco for the tests: {error}", file=sys.stderr)
        return 1
    if not DEFAULT_RULES.is_file():
        print(f"{DEFAULT_RULES}: no such file (the shared test data beside this checkout)", file=sys.stderr)
        return 1
    print(f"Falco {falco_version(binaries)} from {binaries.source}: {binaries.falco}")
    print(f"container plugin: {binaries.container_plugin}")
    verdict = validate_rules([DEFAULT_RULES], binaries=binaries)
    if verdict.failure:
        print(f"{DEFAULT_RULES}: {verdict.failure}")
    for result in verdict.results:
        print(f"{result.get('name')}: {'Ok' if result.get('successful') else 'Invalid'}")
        for problem in result.get("errors") or []:
            print(f"  {problem.get('code')} at {problem.get('file')}:{problem.get('line')}: {problem.get('message')}")
    return 0 if verdict.successful else 1


if __name__ == "__main__":
    sys.exit(main())
