"""Plugin libraries named after their content, through a restart of the agent: the disk is the truth, a Plugin
whose source fails at start keeps the library its entry names, and libraries nothing names are removed."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from e2e.agent import falco_pods
from e2e.controlplane import ControlPlane
from e2e.falco import SHARED_FALCO, FalcoBinaries, run_falco
from e2e.kube import call
from e2e.oci_artifacts import push_plugin
from e2e.registry import Registry
from falco_operator.artifacts import PLUGINS_CONFIG_FILE
from falco_operator.artifacts.oci import machine_architecture
from tests.integration.agent_support import create, patch, running_agents, wait_entry, wait_files

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds", "operator")]
JSON_PLUGIN = SHARED_FALCO / "plugins" / "libjson.so"
REPOSITORY = "falcosecurity/plugins/plugin/json"


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
