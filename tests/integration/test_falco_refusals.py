"""What a real Falco refused, as the agent reports it and the status shows it: a reload Falco refuses after the
agent's swap makes the artifacts of that swap ``Refused`` (never programmed, Programmed=False reason Refused); a
Plugin is Loaded only when Falco restarted after its swap and runs it, not while Falco keeps the old one."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from e2e.agent import AgentProcess, falco_pods, rule, rulesfile
from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.falco import SHARED_FALCO, FalcoBinaries, RunningFalco, run_falco
from e2e.kube import call, request
from e2e.oci_artifacts import push_plugin
from e2e.registry import Registry
from e2e.wait import wait_for
from falco_operator.artifacts import PLUGINS_CONFIG_FILE
from falco_operator.artifacts.oci import machine_architecture
from tests.integration.agent_support import (
    ARTIFACT_API,
    PLURALS,
    create,
    delete,
    patch,
    running_agents,
    wait_entry,
    wait_files,
)

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds", "operator")]
QUIET = "evt.type = open and proc.name = never-runs-here"
JSON_PLUGIN = SHARED_FALCO / "plugins" / "libjson.so"


def artifact(kind: str, name: str, spec: Json) -> Json:
    return {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": kind, "metadata": {"name": name},
            "spec": spec}  # fmt: skip


async def status_of(api: kr8s.asyncio.Api, namespace: str, kind: str, name: str) -> Json:
    answer, body = await request(api, "GET", f"{ARTIFACT_API}/namespaces/{namespace}/{PLURALS[kind]}/{name}")
    return dict(body.get("status") or {}) if answer == 200 and isinstance(body, dict) else {}


def programmed(status: Json) -> tuple[str, str, str]:
    found: Json = next((c for c in status.get("conditions") or [] if c["type"] == "Programmed"), {})
    return str(found.get("status")), str(found.get("reason")), str(found.get("message"))


async def test_a_reload_falco_refuses_is_refused_in_the_report_and_the_status_until_the_set_is_fixed(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    pods = await falco_pods(api, namespace, "falco")
    port = free_port()
    await create(api, namespace, rulesfile("quiet", rule("quiet", QUIET)))
    plugin = artifact("Plugin", "json", {"config": {"libraryPath": str(JSON_PLUGIN), "initConfig": ""}})
    await create(api, namespace, plugin)
    urls = {"node1": f"http://127.0.0.1:{port}"}
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"], urls) as agents:
        agent = agents["node1"]
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
            loaded = await wait_entry(api, agent, "Plugin", "json", lambda e: e.get("state") == "Loaded", "json")
            assert loaded["message"] == ("Falco runs plugin json 0.7.4; the version could not be checked (the "
                                         "library is not delivered from an OCI artifact)")  # fmt: skip

            # Valid to the agent, refused by Falco: an unknown rule matching strategy.
            failures = falco.reload_failures()
            await create(api, namespace, artifact("Config", "matching", {"config": {"rule_matching": "bogus"}}))
            refused = await wait_entry(api, agent, "Config", "matching", lambda e: e.get("state") == "Refused",
                                       "the Config refused by Falco")  # fmt: skip
            assert falco.reload_failures() > failures
            assert 'Unknown rule matching strategy "bogus"' in falco.log()
            assert refused["reason"] == "Refused"
            assert refused["message"].startswith("Falco refused the reload that would load 50-03-matching-inline.yaml")
            config = await wait_for(partial(status_of, api, namespace, "Config", "matching"),
                                    lambda found: programmed(found)[1] == "Refused", what="Refused")  # fmt: skip
            assert programmed(config)[0] == "False"
            assert "Falco refused it on node1: Falco refused the reload" in programmed(config)[2]
            assert config["nodes"]["installed"] == 0
            assert config["nodes"]["failed"] == 1

            # While the set stays refused, a Plugin change does not reach Falco: Refused, not "Falco runs json".
            missing = str(tmp_path / "no-such-library.so")
            await patch(api, namespace, "Plugin", "json", {"spec": {"config": {"libraryPath": missing}}})
            stale = await wait_entry(api, agent, "Plugin", "json", lambda e: e.get("state") == "Refused",
                                     "the changed Plugin refused")  # fmt: skip
            assert "its entry in the plugins fragment" in stale["message"]
            assert (await falco.versions())["plugin_versions"] == {"json": "0.7.4"}
            status = await wait_for(partial(status_of, api, namespace, "Plugin", "json"),
                                    lambda found: programmed(found)[1] == "Refused", what="Refused")  # fmt: skip
            assert status["nodes"]["loaded"] == 0
            table = control_plane.kubectl("get", "plugins", "-n", namespace).stdout
            assert table.splitlines()[0].split()[:4] == ["NAME", "PROGRAMMED", "NODES", "LOADED"], table

            # The set fixed: Falco restarts, the Plugin is Loaded again and nothing is Refused.
            await delete(api, namespace, "Config", "matching")
            await patch(api, namespace, "Plugin", "json", {"spec": {"config": {"libraryPath": str(JSON_PLUGIN)}}})
            await wait_entry(api, agent, "Plugin", "json", lambda e: e.get("state") == "Loaded", "json again")
            await wait_entry(api, agent, "Rulesfile", "quiet", lambda e: e.get("state") == "Loaded", "rules")
            # node1 only has an agent here: the other two nodes are waited for, nothing failed.
            fixed = await wait_for(partial(status_of, api, namespace, "Plugin", "json"),
                                   lambda status: status["nodes"]["loaded"] == 1, what="Plugin loaded")  # fmt: skip
            assert fixed["nodes"] == {"targeted": 3, "installed": 1, "loaded": 1, "failed": 0, "summary": "1/3"}
            assert programmed(fixed)[1] == "Pending"


async def test_after_an_agent_restart_a_refused_reload_refuses_only_the_artifacts_it_changed(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    pods = await falco_pods(api, namespace, "falco")
    port = free_port()
    await create(api, namespace, rulesfile("quiet", rule("quiet", QUIET)))
    await create(api, namespace, artifact("Config", "kept", {"config": {"json_output": False}}))
    urls = {"node1": f"http://127.0.0.1:{port}"}
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"], urls) as agents:
        agent = agents["node1"]
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
            await wait_entry(api, agent, "Rulesfile", "quiet", lambda e: e.get("state") == "Loaded", "rules")
            # The agent restarts: it has seen no swap of its own, only the files on disk, which Falco runs.
            agent.stop()
            agent.start()
            await agent.wait_ready()
            failures = falco.reload_failures()
            await create(api, namespace, artifact("Config", "matching", {"config": {"rule_matching": "bogus"}}))
            await wait_entry(api, agent, "Config", "matching", lambda e: e.get("state") == "Refused",
                             "the Config refused by Falco")  # fmt: skip
            assert falco.reload_failures() > failures
            # Config kept was on disk before the refused swap and that swap did not change it: not Refused.
            kept = await wait_entry(api, agent, "Config", "kept", lambda e: bool(e.get("state")), "Config kept")
            assert (kept["state"], kept["reason"]) == ("Installed", "Installed"), kept
            quiet = await wait_entry(api, agent, "Rulesfile", "quiet", lambda e: bool(e.get("state")), "rules")
            assert quiet["state"] == "Loaded"


def json_plugin_075() -> bytes:
    """The json plugin 0.7.4 with its version string changed to 0.7.5: another version of the same plugin."""
    library = JSON_PLUGIN.read_bytes()
    assert library.count(b"time0.7.4<nil>") == 1, "the version string of the shared json plugin build"
    return library.replace(b"time0.7.4<nil>", b"time0.7.5<nil>")


def loaded_on_one_node(generation: int) -> Callable[[Json], bool]:
    def accept(status: Json) -> bool:
        return status.get("observedGeneration") == generation and (status.get("nodes") or {}).get("loaded") == 1

    return accept


def library_file(library: bytes) -> str:
    """The name the agent gives a delivered json library: one per content (docs/agent.md)."""
    return f"json-{hashlib.sha256(library).hexdigest()[:12]}.so"


async def test_a_plugin_moved_to_another_version_is_loaded_at_that_version_by_the_running_falco(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path, falco_binaries: FalcoBinaries,
    oci_registry: Registry,
) -> None:  # fmt: skip
    architecture = machine_architecture()
    repository = "falcosecurity/plugins/plugin/json"
    older, newer = JSON_PLUGIN.read_bytes(), json_plugin_075()
    push_plugin(oci_registry, repository, "0.7.4", {architecture: older}, "json", "0.7.4")
    push_plugin(oci_registry, repository, "0.7.5", {architecture: newer}, "json", "0.7.5")
    pods = await falco_pods(api, namespace, "falco")
    auth = base64.b64encode(f"{oci_registry.username}:{oci_registry.password}".encode()).decode()
    config = json.dumps({"auths": {f"https://{oci_registry.host}/v1/": {"auth": auth}}})
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/secrets", body={
        "metadata": {"name": "registry"}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()}})  # fmt: skip
    reference = f"{oci_registry.host}/{repository}"
    oci = {"reference": f"{reference}:0.7.4", "pullSecret": {"secretName": "registry"}}
    await create(api, namespace, artifact("Plugin", "json", {"ociArtifact": oci, "config": {"initConfig": ""}}))
    port = free_port()
    args = (f"--registry-ca={oci_registry.ca}", "--allow-private-registries")
    urls = {"node1": f"http://127.0.0.1:{port}"}

    async def move_to(agent: AgentProcess, falco: RunningFalco, version: str, generation: int) -> Json:
        reloads = falco.reload_count()
        await patch(api, namespace, "Plugin", "json",
                    {"spec": {"ociArtifact": {"reference": f"{reference}:{version}"}}})  # fmt: skip
        await falco.wait_reloaded(reloads)

        def settled(entry: Json) -> bool:  # not while Falco has yet to restart with the new entry ("(yet)")
            # nor while the report still says the pull is Pending: it waits up to the agent's window for Falco
            message = entry.get("message") or ""
            written = entry.get("state") in ("Installed", "Loaded")
            return entry.get("generation") == generation and written and version in message and "(yet)" not in message

        return await wait_entry(api, agent, "Plugin", "json", settled, f"the report on generation {generation}")

    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"], urls, args) as agents:
        agent = agents["node1"]
        await wait_files(agent, agent.plugins_dir, bool, "the library", timeout=20)
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
            loaded = await wait_entry(api, agent, "Plugin", "json", lambda e: e.get("state") == "Loaded", "0.7.4")
            assert loaded["message"] == "Falco runs plugin json 0.7.4"

            # The same Falco process, restarted by the swap, runs the new version (before: it kept 0.7.4).
            moved = await move_to(agent, falco, "0.7.5", 2)
            assert (moved["state"], moved["message"]) == ("Loaded", "Falco runs plugin json 0.7.5")
            assert (await falco.versions())["plugin_versions"] == {"json": "0.7.5"}
            await wait_for(partial(status_of, api, namespace, "Plugin", "json"), loaded_on_one_node(2),
                           what="the status: loaded on node1")  # fmt: skip
            # The new library has a name of its own; the old one left with the generation that named it.
            assert agent.files(agent.plugins_dir) == {library_file(newer): newer}
            fragment = agent.files(agent.config_dir)[PLUGINS_CONFIG_FILE].decode()
            assert f"library_path: {agent.plugins_dir}/{library_file(newer)}\n" in fragment

            # Back to 0.7.4: a name Falco loaded before names the same bytes, so it runs 0.7.4 again.
            back = await move_to(agent, falco, "0.7.4", 3)
            assert (back["state"], back["message"]) == ("Loaded", "Falco runs plugin json 0.7.4")
            assert agent.files(agent.plugins_dir) == {library_file(older): older}

            # A libraryPath the user gives in the plugins directory is honoured: the library gets that name.
            named = str(agent.plugins_dir / "json.so")
            reloads = falco.reload_count()
            await patch(api, namespace, "Plugin", "json", {"spec": {"config": {"libraryPath": named}}})
            await falco.wait_reloaded(reloads)
            await wait_entry(api, agent, "Plugin", "json", lambda e: e.get("generation") == 4 and e.get("state") ==
                             "Loaded", "the library at the user's path")  # fmt: skip
            assert agent.files(agent.plugins_dir) == {"json.so": older}
            # There a running Falco does not load a new library, and the report says so instead of Loaded (the agent
            # knows 0.7.5's version again, though its digest left the OCI cache when json moved back to 0.7.4).
            stale = await move_to(agent, falco, "0.7.5", 5)
            assert stale["state"] == "Installed"
            assert "Falco runs plugin json 0.7.4, not the delivered 0.7.5" in stale["message"]
            assert agent.files(agent.plugins_dir) == {"json.so": newer}
            assert falco.reload_failures() == 0
