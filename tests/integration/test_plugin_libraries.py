"""Plugin libraries named after their content, through a restart of the agent: the disk is the truth, a Plugin
whose source fails at start keeps the library its entry names, and libraries nothing names are removed."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from e2e.agent import falco_pods
from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.falco import SHARED_FALCO, FalcoBinaries, run_falco
from e2e.kube import call
from e2e.oci_artifacts import PLUGIN_CONFIG, PLUGIN_LAYER, push_plugin, tar_gz
from e2e.registry import Registry
from falco_operator.artifacts import PLUGINS_CONFIG_FILE
from falco_operator.artifacts.oci import machine_architecture
from tests.integration.agent_support import create, patch, running_agents, wait_entry, wait_files

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds", "operator")]
JSON_PLUGIN = SHARED_FALCO / "plugins" / "libjson.so"
REPOSITORY = "falcosecurity/plugins/plugin/json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
UNCHECKED = "the version could not be checked (the OCI artifact has no readable config that gives it)"


async def registry_secret(api: kr8s.asyncio.Api, namespace: str, registry: Registry) -> None:
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    config = json.dumps({"auths": {f"https://{registry.host}/v1/": {"auth": auth}}})
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/secrets", body={
        "metadata": {"name": "registry"}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()}})  # fmt: skip


async def test_a_restarted_agent_keeps_the_library_a_failing_plugins_entry_names_and_removes_orphans(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path, falco_binaries: FalcoBinaries,
    oci_registry: Registry,
) -> None:  # fmt: skip
    library = JSON_PLUGIN.read_bytes()
    push_plugin(oci_registry, REPOSITORY, "0.7.4", {machine_architecture(): library}, "json", "0.7.4")
    await registry_secret(api, namespace, oci_registry)
    reference = f"{oci_registry.host}/{REPOSITORY}"
    oci = {"reference": f"{reference}:0.7.4", "pullSecret": {"secretName": "registry"}}
    await create(api, namespace, {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Plugin",
                                  "metadata": {"name": "json"}, "spec": {"ociArtifact": oci, "config": {
                                      "initConfig": ""}}})  # fmt: skip
    name = f"json-{hashlib.sha256(library).hexdigest()[:12]}.so"
    pods = await falco_pods(api, namespace, "falco")
    args = (f"--registry-ca={oci_registry.ca}", "--allow-private-registries")
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"], None, args) as agents:
        agent = agents["node1"]
        await wait_files(agent, agent.plugins_dir, lambda files: files == {name: library}, "the library", timeout=20)
        fragment = agent.files(agent.config_dir)[PLUGINS_CONFIG_FILE]
        assert f"library_path: {agent.plugins_dir}/{name}\n".encode() in fragment
        inode = (agent.plugins_dir / name).stat().st_ino
        agent.stop()

        # While the agent is down the Plugin names a tag the registry does not have, and libraries no entry names
        # are in the current generation (one a crash left between the swaps of a pass, one of a deleted Plugin).
        orphans = {f"json-{'0' * 12}.so": b"\x7fELF stale", "gone-0123456789ab.so": b"\x7fELF gone"}
        for file, data in orphans.items():
            (agent.plugins_dir / "..data" / file).write_bytes(data)
            (agent.plugins_dir / file).symlink_to(f"..data/{file}")
        assert agent.files(agent.plugins_dir) == {name: library} | orphans
        await patch(api, namespace, "Plugin", "json", {"spec": {"ociArtifact": {"reference": f"{reference}:9.9.9"}}})
        agent.start()
        await agent.wait_ready()

        failed = await wait_entry(api, agent, "Plugin", "json", lambda e: e.get("generation") == 2 and
                                  e.get("state") == "Failed", "the tag not found")  # fmt: skip
        assert failed["reason"] == "NotFound"
        assert "the last good files stay" in failed["message"]
        assert failed["files"] == [str(agent.plugins_dir / name)]
        await wait_files(agent, agent.plugins_dir, lambda files: files == {name: library}, "the orphans removed")
        assert agent.files(agent.config_dir)[PLUGINS_CONFIG_FILE] == fragment
        assert (agent.plugins_dir / name).stat().st_ino == inode, "the library kept, not written again"

        # Falco starts with what the agent kept and runs the plugin from it.
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries) as falco:  # fmt: skip
            await falco.wait_healthy()
            assert (await falco.versions())["plugin_versions"] == {"json": "0.7.4"}


async def test_a_plugin_without_oci_names_the_images_library_by_a_relative_path_and_falco_runs_it(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path, falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    """``libraryPath: libcontainer.so`` without ``ociArtifact`` is the image's /usr/share/falco/plugins/libcontainer.so
    (the official image ships it): the entry keeps the relative path, the agent writes no library and withholds
    nothing, and Falco, whose plugins directory holds the library as an image's does, runs it with the rules."""
    if os.geteuid() != 0:
        pytest.skip("Falco sees an image's plugins directory through a mount namespace of its own: needs root")
    await create(api, namespace, {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Plugin",
                                  "metadata": {"name": "container"}, "spec": {"config": {
                                      "libraryPath": "libcontainer.so",
                                      "initConfig": {"label_max_len": 100, "with_size": False}}}})  # fmt: skip
    rule = "- rule: in_container\n  desc: d\n  condition: container.id != host and proc.name = nope\n  output: o\n" \
           "  priority: INFO\n"  # fmt: skip
    await create(api, namespace, {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
                                  "metadata": {"name": "containers"}, "spec": {"inlineRules": rule}})  # fmt: skip
    pods = await falco_pods(api, namespace, "falco")
    port = free_port()
    urls = {"node1": f"http://127.0.0.1:{port}"}
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"], urls) as agents:
        agent = agents["node1"]
        await wait_files(agent, agent.rules_dir, lambda files: files == {"50-03-containers-inline.yaml": rule.encode()},
                         "the rules that use container fields", timeout=20)  # fmt: skip
        assert b"library_path: libcontainer.so\n" in agent.files(agent.config_dir)[PLUGINS_CONFIG_FILE]
        assert agent.files(agent.plugins_dir) == {}
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries, web_port=port,
                       image_plugins=[falco_binaries.container_plugin]) as falco:  # fmt: skip
            await falco.wait_healthy()
            assert (await falco.versions())["plugin_versions"] == {"container": "0.7.1"}
            await wait_entry(api, agent, "Rulesfile", "containers", lambda e: e.get("state") == "Loaded",
                             "Rulesfile confirmed by Falco")  # fmt: skip
            plugin = await wait_entry(api, agent, "Plugin", "container", lambda e: e.get("state") == "Loaded",
                                      "Plugin confirmed by Falco")  # fmt: skip
            assert plugin["message"] == ("Falco runs plugin container 0.7.1; the version could not be checked (the "
                                         "library is not delivered from an OCI artifact)")  # fmt: skip


NO_VERSION = json.dumps({"name": "json", "dependencies": [], "requirements": []}).encode()
"""falcoctl's plugin config without its ``version``."""


@pytest.mark.parametrize(("config", "config_type"), [(b"{}", EMPTY_CONFIG), (NO_VERSION, PLUGIN_CONFIG)],
                         ids=["no plugin config", "a config without a version"])  # fmt: skip
async def test_a_plugin_of_a_version_the_agent_cannot_read_is_loaded_only_after_falco_restarts_with_it(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path, falco_binaries: FalcoBinaries,
    oci_registry: Registry, config: bytes, config_type: str,
) -> None:  # fmt: skip
    """The artifact gives the agent no version of the plugin (no falcoctl config, or one without ``version``): Falco
    started after the swap runs a plugin of that name, so it is Loaded and says the version was not checked. A
    restarted agent has seen no restart of Falco after these files: Installed (NotLoaded) until Falco restarts."""
    library = JSON_PLUGIN.read_bytes()
    layer = tar_gz({"libjson.so": library})
    oci_registry.push_index(REPOSITORY, "unversioned", {machine_architecture(): (layer, PLUGIN_LAYER, config,
                                                                                 config_type)})  # fmt: skip
    await registry_secret(api, namespace, oci_registry)
    oci = {"reference": f"{oci_registry.host}/{REPOSITORY}:unversioned", "pullSecret": {"secretName": "registry"}}
    await create(api, namespace, {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Plugin",
                                  "metadata": {"name": "json"}, "spec": {"ociArtifact": oci, "config": {
                                      "initConfig": ""}}})  # fmt: skip
    name = f"json-{hashlib.sha256(library).hexdigest()[:12]}.so"
    pods = await falco_pods(api, namespace, "falco")
    port = free_port()
    urls = {"node1": f"http://127.0.0.1:{port}"}
    # Falco restarting without a swap is seen at the agent's next slow poll: 1 s here, not 30 s.
    args = (f"--registry-ca={oci_registry.ca}", "--allow-private-registries", "--falco-poll-interval=1")
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"], urls, args) as agents:
        agent = agents["node1"]
        await wait_files(agent, agent.plugins_dir, lambda files: files == {name: library}, "the library", timeout=20)
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
            await falco.wait_healthy()
            assert (await falco.versions())["plugin_versions"] == {"json": "0.7.4"}
            loaded = await wait_entry(api, agent, "Plugin", "json", lambda e: e.get("state") == "Loaded", "json")
            assert loaded["message"] == f"Falco runs plugin json 0.7.4; {UNCHECKED}"

            # The agent restarts while Falco keeps running: Falco lists the name, which proves nothing now.
            agent.stop()
            agent.start()
            await agent.wait_ready()
            waiting = await wait_entry(api, agent, "Plugin", "json", lambda e: e.get("reason") == "NotLoaded",
                                       "json not confirmed by the restarted agent")  # fmt: skip
            assert waiting["state"] == "Installed"
            assert "the agent has not seen Falco restart since these files were written" in waiting["message"]
            assert UNCHECKED in waiting["message"]
            assert agent.files(agent.plugins_dir) == {name: library}, "the same files: nothing to reload"
        # Falco restarts over the same files: they are loaded again.
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
            await falco.wait_healthy()
            again = await wait_entry(api, agent, "Plugin", "json", lambda e: e.get("state") == "Loaded", "json again")
            assert again["message"] == f"Falco runs plugin json 0.7.4; {UNCHECKED}"
