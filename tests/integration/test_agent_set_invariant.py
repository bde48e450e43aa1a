"""The set invariant through the agent on the local control plane, with real Falco: a Rulesfile that stops applying
to the node (a relabel) takes its dependent out in the same swap, the report says why, and Falco keeps loading; a
Plugin's version from its OCI config decides which rules meet their ``required_plugin_versions``."""

from __future__ import annotations

import json
from pathlib import Path

import kr8s.asyncio
import pytest

from e2e.agent import falco_pods, rule, rulesfile
from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.falco import RELOAD_FAILURE_LINE, FalcoBinaries, RunningFalco, run_falco
from e2e.kube import call
from e2e.oci_artifacts import RULES_CONFIG, RULES_LAYER, push_plugin, tar_gz
from e2e.operator import RunningOperator
from e2e.registry import Registry
from e2e.wait import wait_for
from falco_operator.artifacts import sha256_hex
from falco_operator.artifacts.oci import machine_architecture
from tests.integration.agent_support import create, entry, report, running_agents, wait_entry, wait_files
from tests.integration.test_oci_agent import agent_args, create_secret, docker_config

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
MERGE = "application/merge-patch+json"
MACRO_M = "- macro: m\n  condition: evt.num > 0\n"


async def set_node_label(api: kr8s.asyncio.Api, node: str, key: str, value: str | None) -> None:
    await call(api, "PATCH", f"/api/v1/nodes/{node}", body={"metadata": {"labels": {key: value}}}, content_type=MERGE)


async def without_refusals(falco: RunningFalco, files: dict[str, bytes]) -> None:
    """Falco runs exactly these rules files, and refused no reload on the way."""
    await falco.wait_rules({name: sha256_hex(data) for name, data in files.items()})
    refusals = [line for line in falco.log().splitlines() if RELOAD_FAILURE_LINE in line]
    assert refusals == [], refusals


async def test_a_dependency_that_stops_applying_takes_its_dependent_out_and_falco_keeps_loading(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    label = f"rules-{namespace}"[:63]
    await set_node_label(api, "node1", label, "base")
    try:
        pods = await falco_pods(api, namespace, "falco")
        await create(api, namespace, rulesfile("base", MACRO_M, priority=10, selector={"matchLabels": {label: "base"}}))
        await create(api, namespace, rulesfile("team", rule("team", "m and proc.name = nope")))
        port = free_port()
        urls = {"node1": f"http://127.0.0.1:{port}"}
        async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"], urls) as agents:
            agent = agents["node1"]
            both = await wait_files(agent, agent.rules_dir, lambda files: len(files) == 2, "base and team")
            with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                           binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
                await without_refusals(falco, both)

                await set_node_label(api, "node1", label, None)  # base no longer applies to node1
                await wait_files(agent, agent.rules_dir, lambda files: files == {}, "base and team gone")
                team = await wait_entry(api, agent, "Rulesfile", "team", lambda e: e.get("reason") == "DependencyGone",
                                        "team withheld")  # fmt: skip
                assert team["state"] == "Failed"
                assert team["message"].startswith(
                    "needs Rulesfile base (10-03-base-inline.yaml), which no longer applies to this Falco"
                )
                assert "undefined macro 'm'" in team["message"]
                assert not team.get("files")
                assert entry(await report(api, agent), "Rulesfile", "base") == {}
                await without_refusals(falco, {})

                await create(api, namespace, rulesfile("later", rule("later")))  # a later change still loads
                later = await wait_files(agent, agent.rules_dir, lambda files: len(files) == 1, "later written")
                await without_refusals(falco, later)
                assert (await wait_entry(api, agent, "Rulesfile", "team", lambda e: e.get("reason") == "DependencyGone",
                                         "team still withheld"))["state"] == "Failed"  # fmt: skip

                await set_node_label(api, "node1", label, "base")  # base applies again: team comes back with it
                every = await wait_files(agent, agent.rules_dir, lambda files: len(files) == 3, "all three")
                await without_refusals(falco, every)
                await wait_entry(api, agent, "Rulesfile", "team", lambda e: e.get("state") == "Loaded", "team loaded")
                assert falco.alive()
    finally:
        await set_node_label(api, "node1", label, None)


def requiring(name: str, version: str) -> str:
    return (f"- required_plugin_versions:\n  - name: container\n    version: {version}\n"
            + rule(name, "container.id != host and proc.name = nope"))  # fmt: skip


async def test_the_version_in_a_plugins_oci_config_decides_its_rules_requirements(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    oci_registry: Registry, falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    library = falco_binaries.container_plugin.read_bytes()
    other = b"\x7fELF not this machine"
    libraries = {"amd64": library, "arm64": other} if machine_architecture() == "amd64" else {"arm64": library}
    push_plugin(oci_registry, "plugins/container", "0.7.1", libraries, version="0.7.1")
    await create_secret(api, namespace, "registry", docker_config(oci_registry),
                        type_="kubernetes.io/dockerconfigjson")  # fmt: skip
    pods = await falco_pods(api, namespace, "falco")
    source = {"reference": f"{oci_registry.host}/plugins/container:0.7.1", "pullSecret": {"secretName": "registry"}}
    config = {"initConfig": {"label_max_len": 100, "with_size": False}}
    plugin = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Plugin", "metadata": {"name": "container"},
              "spec": {"ociArtifact": source, "config": config}}  # fmt: skip
    await create(api, namespace, plugin)
    await create(api, namespace, rulesfile("fits", requiring("fits", "0.7.0")))
    await create(api, namespace, rulesfile("needs-newer", requiring("needs_newer", "0.9.0")))
    port = free_port()
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"],
                              {"node1": f"http://127.0.0.1:{port}"}, agent_args(oci_registry)) as agents:  # fmt: skip
        agent = agents["node1"]
        newer = await wait_entry(api, agent, "Rulesfile", "needs-newer", lambda e: e.get("state") == "Failed",
                                 "needs-newer withheld")  # fmt: skip
        assert newer["reason"] == "RequirementsNotMet"
        assert "require plugin container >= 0.9.0" in newer["message"]
        assert "this Falco loads container 0.7.1" in newer["message"]
        files = await wait_files(agent, agent.rules_dir, lambda f: bool(f), "the rules that fit")
        assert list(files) == ["50-03-fits-inline.yaml"]
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
            await without_refusals(falco, files)
            await wait_entry(api, agent, "Rulesfile", "fits", lambda e: e.get("state") == "Loaded", "fits loaded")


async def test_rules_whose_oci_config_depends_on_a_plugin_wait_for_it_to_be_configured(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    oci_registry: Registry, falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    rules = rule("declared", "evt.num = 3").encode()
    config = {"name": "declared-rules", "version": "1.0.0", "requirements": [],
              "dependencies": [{"name": "container", "version": "0.4.0"}]}  # fmt: skip
    oci_registry.push_artifact("rules/declared", "1", tar_gz({"declared.yaml": rules}), RULES_LAYER,
                               json.dumps(config).encode(), RULES_CONFIG)  # fmt: skip
    library = falco_binaries.container_plugin.read_bytes()
    push_plugin(oci_registry, "plugins/container", "0.7.1", {machine_architecture(): library}, version="0.7.1")
    await create_secret(api, namespace, "registry", docker_config(oci_registry),
                        type_="kubernetes.io/dockerconfigjson")  # fmt: skip
    pods = await falco_pods(api, namespace, "falco")
    await create(api, namespace, rulesfile("declared", ociArtifact={
        "reference": f"{oci_registry.host}/rules/declared:1", "pullSecret": {"secretName": "registry"}}))  # fmt: skip
    port = free_port()
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"],
                              {"node1": f"http://127.0.0.1:{port}"}, agent_args(oci_registry)) as agents:  # fmt: skip
        agent = agents["node1"]
        waiting = await wait_entry(api, agent, "Rulesfile", "declared", lambda e: e.get("state") == "Failed",
                                   "withheld for its declared dependency")  # fmt: skip
        assert waiting["reason"] == "RequirementsNotMet"
        assert waiting["message"].startswith("its OCI artifact's config (dependencies): it needs a plugin this Falco "
                                             "does not load: add a Plugin for container (>= 0.4.0)")  # fmt: skip
        assert agent.files(agent.rules_dir) == {}

        source = {"reference": f"{oci_registry.host}/plugins/container:0.7.1", "pullSecret": {"secretName": "registry"}}
        settings = {"initConfig": {"label_max_len": 100, "with_size": False}}
        await create(api, namespace, {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Plugin",
                                      "metadata": {"name": "container"},
                                      "spec": {"ociArtifact": source, "config": settings}})  # fmt: skip
        files = await wait_files(agent, agent.rules_dir, lambda f: bool(f), "the rules once the plugin is there")
        assert files == {"50-01-declared-oci.yaml": rules}
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
            await without_refusals(falco, files)
            await wait_entry(api, agent, "Rulesfile", "declared", lambda e: e.get("state") == "Loaded", "loaded")


async def test_rules_requiring_a_newer_engine_than_falcos_are_withheld_and_falco_keeps_loading(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    pods = await falco_pods(api, namespace, "falco")
    await create(api, namespace, rulesfile("base", rule("base")))
    port = free_port()
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"],
                              {"node1": f"http://127.0.0.1:{port}"}) as agents:  # fmt: skip
        agent = agents["node1"]
        base = await wait_files(agent, agent.rules_dir, lambda files: len(files) == 1, "base")
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
            await without_refusals(falco, base)
            engine = (await falco.versions())["engine_version_semver"]
            await wait_entry(api, agent, "Rulesfile", "base", lambda e: e.get("state") == "Loaded", "base loaded")

            await create(api, namespace, rulesfile("future", "- required_engine_version: 0.99.0\n" + rule("future")))
            future = await wait_entry(api, agent, "Rulesfile", "future", lambda e: e.get("state") == "Failed",
                                      "future withheld")  # fmt: skip
            assert future["reason"] == "RequirementsNotMet"
            assert (f"the rules require Falco engine version 0.99.0, but this Falco's engine is {engine}"
                    in future["message"])  # fmt: skip
            assert agent.files(agent.rules_dir) == base

            await create(api, namespace, rulesfile("later", rule("later")))  # a later change still loads
            later = await wait_files(agent, agent.rules_dir, lambda files: len(files) == 2, "later written")
            assert sorted(later) == ["50-03-base-inline.yaml", "50-03-later-inline.yaml"]
            await without_refusals(falco, later)
            await wait_entry(api, agent, "Rulesfile", "later", lambda e: e.get("state") == "Loaded", "later loaded")

        # Falco stopped (a restart, a crash): the engine it reported still judges what the agent writes.
        await create(api, namespace, rulesfile("meanwhile", rule("meanwhile")))
        await wait_files(agent, agent.rules_dir, lambda found: "50-03-meanwhile-inline.yaml" in found,
                         "meanwhile written")  # fmt: skip
        # The swap makes the agent ask Falco at once; the pass that follows its silence publishes reachable: false.
        await wait_for(lambda: report(api, agent), lambda body: (body.get("status") or {}).get("falco", {}).get(
            "reachable") is False, timeout=15, what="the agent seeing Falco gone")  # fmt: skip
        files = agent.files(agent.rules_dir)
        assert sorted(files) == ["50-03-base-inline.yaml", "50-03-later-inline.yaml", "50-03-meanwhile-inline.yaml"]
        future = entry(await report(api, agent), "Rulesfile", "future")
        assert (future["state"], future["reason"]) == ("Failed", "RequirementsNotMet")
