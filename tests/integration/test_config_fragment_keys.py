"""Case 6 of issue 23 with real Falco: a config fragment that sets ``webserver`` or ``metrics`` replaces the whole
mapping. What Falco does with each fragment (refuses to start, runs without ``/healthz``, runs without the SHA-256
metrics, or runs as a Falco pod needs) is what the agent's and the operator's config check say of it; and an
agent in front of a running Falco refuses such a fragment, so Falco keeps running and reloading."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import kr8s.asyncio
import pytest

from e2e.agent import falco_pods, rule, rulesfile
from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.controlplane.processes import popen, terminate
from e2e.falco import RULES_METRIC, FalcoBinaries, falco_config, parse_sha256_metric, run_falco, write_yaml
from falco_operator.artifacts import Invalid, parse_config
from falco_operator.artifacts.kept_config import FALCO_WEB_PORT
from tests.integration.agent_support import create, entry, report, running_agents, wait_entry, wait_files

pytestmark = pytest.mark.anyio
STARTED_LINE = "Opening 'syscall' source with no driver"
"""Logged once Falco has configured everything, its web server included, and opens its event source."""
RULES = rule("quiet", "evt.type = open and proc.name = never-runs-here")


@dataclass(frozen=True)
class FalcoRun:
    started: bool
    healthz: bool
    sha256_metrics: bool
    log: str

    @property
    def fit_for_a_pod(self) -> bool:
        return self.started and self.healthz and self.sha256_metrics


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def start_with_fragment(workdir: Path, binaries: FalcoBinaries, fragment: str) -> FalcoRun:
    """Start Falco as a pod does (web server on 0.0.0.0:8765, the operator's base config) with ``fragment`` in its
    config directory; what it did."""
    rules_dir, config_dir = workdir / "rules.d", workdir / "config.d"
    for directory in (rules_dir, config_dir):
        directory.mkdir(parents=True)
    (rules_dir / "50-quiet.yaml").write_text(RULES)
    (config_dir / "50-fragment.yaml").write_text(fragment)
    config = falco_config(rules_dir, config_dir, FALCO_WEB_PORT, binaries=binaries,
                          extra={"webserver": {"listen_address": "0.0.0.0"}})  # fmt: skip
    path = write_yaml(workdir / "falco.yaml", config)
    deadline = time.monotonic() + 20
    while not _port_free(FALCO_WEB_PORT) and time.monotonic() < deadline:
        time.sleep(0.2)  # the previous Falco of this test lets the port go
    log_path = workdir / "falco.log"
    with log_path.open("wb") as log:
        process = popen([str(binaries.falco), "-c", str(path)], stdout=log, cwd=workdir)
    try:
        while time.monotonic() < deadline and process.poll() is None and STARTED_LINE not in log_path.read_text():
            time.sleep(0.05)
        started = process.poll() is None and STARTED_LINE in log_path.read_text()
        healthz = metrics = False
        with httpx.Client(timeout=1) as http:
            for _ in range(10):  # the web server thread may answer a moment after the log line
                try:
                    healthz = http.get(f"http://127.0.0.1:{FALCO_WEB_PORT}/healthz").status_code == 200
                    answer = http.get(f"http://127.0.0.1:{FALCO_WEB_PORT}/metrics")
                    metrics = answer.status_code == 200 and bool(parse_sha256_metric(answer.text, RULES_METRIC))
                except httpx.HTTPError:
                    pass
                if (healthz and metrics) or not started:
                    break
                time.sleep(0.1)
    finally:
        terminate(process)
    return FalcoRun(started, healthz, metrics, log_path.read_text())


def accepted(fragment: str) -> bool:
    try:
        parse_config(fragment)
    except Invalid:
        return False
    return True


FRAGMENTS = {
    # Falco refuses to start: prometheus_metrics_enabled falls back to false while metrics are on.
    "webserver without prometheus": ("webserver:\n  enabled: true\n  threadiness: 1\n", "refused"),
    # Falco starts without a web server (enabled falls back to false): no /healthz for the probes.
    "webserver without enabled": ("webserver:\n  threadiness: 1\n  prometheus_metrics_enabled: true\n", "no healthz"),
    "webserver on another port": (
        "webserver:\n  enabled: true\n  prometheus_metrics_enabled: true\n  listen_port: 18766\n",
        "no healthz",
    ),
    # Falco runs, the probes pass, but the metrics the agent confirms loads with are gone.
    "metrics without enabled": ("metrics:\n  interval: 30s\n", "no metrics"),
    "metrics without interval": ("metrics:\n  enabled: true\n", "refused"),
    "webserver kept": ("webserver:\n  enabled: true\n  prometheus_metrics_enabled: true\n  threadiness: 1\n", "fit"),
    "metrics kept": ("metrics:\n  enabled: true\n  interval: 30s\n  rules_counters_enabled: false\n", "fit"),
    "other keys": ("json_output: true\n", "fit"),
}


@pytest.mark.parametrize("case", sorted(FRAGMENTS))
def test_the_config_check_accepts_exactly_the_fragments_falco_runs_as_a_pod_needs(
    case: str, tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    fragment, expected = FRAGMENTS[case]
    run = start_with_fragment(tmp_path, falco_binaries, fragment)
    seen = ("refused" if not run.started else "no healthz" if not run.healthz
            else "no metrics" if not run.sha256_metrics else "fit")  # fmt: skip
    assert seen == expected, run.log[-3000:]
    assert accepted(fragment) == run.fit_for_a_pod


@pytest.mark.usefixtures("crds", "operator")
async def test_an_agent_refuses_a_fragment_that_drops_the_web_server_and_falco_keeps_running(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    pods = await falco_pods(api, namespace, "falco")
    port = free_port()
    urls = {"node1": f"http://127.0.0.1:{port}"}
    await create(api, namespace, rulesfile("quiet", RULES))
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"], urls) as agents:
        agent = agents["node1"]
        await wait_files(agent, agent.rules_dir, lambda files: len(files) == 1, "the rules file")
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
            await wait_entry(api, agent, "Rulesfile", "quiet", lambda e: e.get("state") == "Loaded", "rules loaded")
            reloads, failures = falco.reload_count(), falco.reload_failures()
            fragment = {"webserver": {"threadiness": 1}}
            config = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Config",
                      "metadata": {"name": "threads"}, "spec": {"config": fragment}}  # fmt: skip
            await create(api, namespace, config)
            refused = await wait_entry(api, agent, "Config", "threads", lambda e: e.get("state") == "Invalid",
                                       "the fragment refused")  # fmt: skip
            assert "webserver.enabled must be true" in refused["message"]
            assert agent.files(agent.config_dir) == {}
            # A good change after it is loaded: Falco was never asked to reload with the fragment.
            await create(api, namespace, rulesfile("later", rule("later", "evt.type = openat and proc.name = nope")))
            later = await wait_entry(api, agent, "Rulesfile", "later", lambda e: e.get("state") == "Loaded",
                                     "a later Rulesfile loaded")  # fmt: skip
            assert later["state"] == "Loaded"
            assert falco.alive()
            assert (await falco.get("/healthz")).status_code == 200
            assert falco.reload_failures() == failures
            assert falco.reload_count() > reloads
            assert entry(await report(api, agent), "Config", "threads")["state"] == "Invalid"
