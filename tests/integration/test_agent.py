"""The artifact agent on the real control plane: real processes, real ServiceAccount tokens bound to the Role the
operator built for their Falco, files in temporary directories."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio
import pytest

from e2e.agent import AgentProcess, falco_pods, rule, rulesfile
from e2e.audit import AuditMark, describe
from e2e.controlplane import ControlPlane, write_token_kubeconfig
from e2e.controlplane.cluster import free_port
from e2e.falco import FalcoBinaries, RunningFalco, run_falco
from e2e.kube import call, request
from e2e.operator import RunningOperator, service_account_token
from e2e.wait import wait_for
from tests.integration.agent_support import (
    create,
    delete,
    entry,
    patch,
    report,
    running_agents,
    seed,
    wait_entry,
    wait_files,
)

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
MERGE = "application/merge-patch+json"


async def set_node_label(api: kr8s.asyncio.Api, node: str, key: str, value: str | None) -> None:
    await call(api, "PATCH", f"/api/v1/nodes/{node}", body={"metadata": {"labels": {key: value}}}, content_type=MERGE)


async def test_seed_examples_05_06_07_produce_the_documented_files_and_follow_node_labels(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    pods = await falco_pods(api, namespace, "falco")
    await create(api, namespace, seed("05-rulesfile-inline.yaml"))
    container = seed("06-plugin-container.yaml")
    del container["spec"]["ociArtifact"]  # the config part; pulling the library is the OCI source's job
    await create(api, namespace, container)
    await create(api, namespace, seed("07-config-label-selector.yaml"))
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1", "node2"]) as agents:
        node1, node2 = agents["node1"], agents["node2"]
        inline_rules = seed("05-rulesfile-inline.yaml")["spec"]["ociArtifact"]["inline"].encode()
        for agent in (node1, node2):
            assert agent.files(agent.rules_dir) == {"50-03-falco-rules-inline.yaml": inline_rules}
        config_files = node1.files(node1.config_dir)
        assert sorted(config_files) == ["50-03-config-label-selector-inline.yaml", "99-03-plugins-config-inline.yaml"]
        assert config_files["50-03-config-label-selector-inline.yaml"] == (
            b"libs_logger:\n  enabled: true\n  severity: debug"
        )
        fragment = node1.files(node1.config_dir)["99-03-plugins-config-inline.yaml"].decode()
        assert "load_plugins:\n- container\n" in fragment
        assert "init_config:\n    label_max_len: '100'\n    with_size: 'false'\n" in fragment
        # Without ociArtifact the library is the Falco image's, in Falco's own directory (not the agent's).
        assert "library_path: /usr/share/falco/plugins/container.so\n" in fragment
        assert list(node2.files(node2.config_dir)) == ["99-03-plugins-config-inline.yaml"]

        installed = await wait_entry(api, node1, "Config", "config-label-selector", lambda e: bool(e), "Config entry")
        assert installed["state"] == "Installed"
        assert installed["files"] == [str(node1.config_dir / "50-03-config-label-selector-inline.yaml")]
        assert entry(await report(api, node2), "Config", "config-label-selector") == {}, "node2 is not selected"

        hostname = "kubernetes.io/hostname"
        try:
            await set_node_label(api, "node1", hostname, "elsewhere")
            await set_node_label(api, "node2", hostname, "node1")
            await wait_files(node1, node1.config_dir, lambda f: "50-03-config-label-selector-inline.yaml" not in f,
                             "Config removed after relabel", timeout=2)  # fmt: skip
            await wait_files(node2, node2.config_dir, lambda f: "50-03-config-label-selector-inline.yaml" in f,
                             "Config added after relabel", timeout=2)  # fmt: skip
        finally:
            await set_node_label(api, "node1", hostname, "node1")
            await set_node_label(api, "node2", hostname, "node2")


class DirectoryWatcher:
    """Samples a directory as fast as it can from a thread: every ``..data`` target, and the resolvable names of
    every listing made within one generation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.targets: list[str] = []
        self.visible_sets: set[frozenset[str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DirectoryWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                target = os.readlink(self.path / "..data")
                names = frozenset(
                    entry.name for entry in os.scandir(self.path)
                    if not entry.name.startswith("..") and os.path.exists(entry.path)
                )  # fmt: skip
                after = os.readlink(self.path / "..data")
            except OSError:
                continue
            if not self.targets or self.targets[-1] != target:
                self.targets.append(target)
            # A listing during which ..data moved mixes two generations, as any reader's would: a careful reader
            # (and Falco, which reloads on the change) reads again. Keep only listings of one generation.
            if after == target:
                self.visible_sets.add(names)


async def test_four_rulesfiles_applied_at_once_land_in_one_swap(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    pods = await falco_pods(api, namespace, "falco")
    await create(api, namespace, rulesfile("base", rule("base")))
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"]) as agents:
        agent = agents["node1"]
        assert list(agent.files(agent.rules_dir)) == ["50-03-base-inline.yaml"]
        swaps = agent.metric("falco_artifact_agent_generation_swaps_total", directory="rules")
        manifests = tmp_path / "four"
        manifests.mkdir()
        for index in range(4):
            (manifests / f"{index}.json").write_text(
                json.dumps(rulesfile(f"batch-{index}", rule(f"batch_{index}")) |
                                         {"metadata": {"name": f"batch-{index}", "namespace": namespace}})
            )  # fmt: skip
        with DirectoryWatcher(agent.rules_dir) as watcher:
            control_plane.kubectl("apply", "-f", str(manifests))
            await wait_files(agent, agent.rules_dir, lambda files: len(files) == 5, "four new rules files")
        assert len(watcher.targets) == 2, f"one ..data rename, saw {watcher.targets}"
        sizes = sorted(len(names) for names in watcher.visible_sets)
        assert set(sizes) <= {1, 5}, f"a state with only some of the four was visible: {sizes}"
        assert agent.metric("falco_artifact_agent_generation_swaps_total", directory="rules") == swaps + 1


@pytest.mark.parametrize(
    ("broken", "words"),
    [
        ("- rule: shell\n  desc: [unclosed\n", "invalid YAML"),
        ("- rule: shell\n  desc: d\n  output: o\n  priority: WARNING\n", "missing condition"),
        ("- rule: shell\n  desc: d\n  condition: evt.num > 0\n  output: o\n  priority: LOUD\n", "priority 'LOUD'"),
    ],
    ids=["yaml-error", "no-condition", "loud-priority"],
)
async def test_an_invalid_inline_rules_document_keeps_the_previous_files_and_recovers(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    broken: str, words: str,
) -> None:  # fmt: skip
    pods = await falco_pods(api, namespace, "falco")
    await create(api, namespace, rulesfile("shell", rule("shell")))
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"]) as agents:
        agent = agents["node1"]
        before = agent.files(agent.rules_dir)
        inode = (agent.rules_dir / "50-03-shell-inline.yaml").stat().st_ino
        assert before == {"50-03-shell-inline.yaml": rule("shell").encode()}
        await patch(api, namespace, "Rulesfile", "shell", {"spec": {"inlineRules": broken}})
        invalid = await wait_entry(api, agent, "Rulesfile", "shell", lambda e: e.get("state") == "Invalid", "Invalid")
        assert words in invalid["message"]
        assert "line " in invalid["message"]
        assert invalid["generation"] == 2
        assert agent.files(agent.rules_dir) == before
        assert (agent.rules_dir / "50-03-shell-inline.yaml").stat().st_ino == inode, "the good file was not rewritten"
        assert agent.metric("falco_artifact_agent_invalid_artifacts_total", kind="Rulesfile") == 1

        fixed = rule("shell", "evt.num > 1")
        await patch(api, namespace, "Rulesfile", "shell", {"spec": {"inlineRules": fixed}})
        await wait_files(agent, agent.rules_dir, lambda f: f == {"50-03-shell-inline.yaml": fixed.encode()}, "fixed")
        await wait_entry(api, agent, "Rulesfile", "shell", lambda e: e.get("state") == "Installed", "recovered")


async def test_a_configmap_sourced_rulesfile_follows_its_configmap_and_nothing_else_is_readable(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    pods = await falco_pods(api, namespace, "falco")
    configmaps = f"/api/v1/namespaces/{namespace}/configmaps"
    await call(api, "POST", configmaps, body={"metadata": {"name": "team-rules"}, "data": {"rules.yaml": rule("v1")}})
    await call(api, "POST", configmaps, body={"metadata": {"name": "unrelated"}, "data": {"x": "y"}})
    await create(api, namespace, rulesfile("team", configMapRef={"name": "team-rules"}, priority=20))
    await create(api, namespace, rulesfile("missing-map", configMapRef={"name": "nowhere"}))
    await create(api, namespace, rulesfile("missing-key", configMapRef={"name": "team-rules", "key": "other.yaml"}))
    await create(api, namespace, rulesfile("inline", rule("inline")))
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"]) as agent_by_node:
        agent = agent_by_node["node1"]
        name = "20-02-team-configmap.yaml"
        assert agent.files(agent.rules_dir) == {
            name: rule("v1").encode(),
            "50-03-inline-inline.yaml": rule("inline").encode(),
        }
        missing = await wait_entry(api, agent, "Rulesfile", "missing-map", lambda e: bool(e), "missing ConfigMap")
        assert (missing["state"], missing["reason"]) == ("Failed", "ConfigMapNotFound")
        assert "nowhere does not exist" in missing["message"]
        no_key = entry(await report(api, agent), "Rulesfile", "missing-key")
        assert (no_key["state"], no_key["reason"]) == ("Failed", "ConfigMapKeyNotFound")
        assert "no key 'other.yaml' (its keys: rules.yaml)" in no_key["message"]

        await call(api, "PATCH", f"{configmaps}/team-rules", body={"data": {"rules.yaml": rule("v2")}},
                   content_type=MERGE)  # fmt: skip
        await wait_files(
            agent, agent.rules_dir, lambda f: f.get(name) == rule("v2").encode(), "ConfigMap edit", timeout=2
        )

        await call(
            api, "POST", configmaps, body={"metadata": {"name": "nowhere"}, "data": {"rules.yaml": rule("late")}}
        )
        await wait_files(agent, agent.rules_dir, lambda f: "50-02-missing-map-configmap.yaml" in f, "late ConfigMap")

        kubeconfig = tmp_path / "token.kubeconfig"
        token = service_account_token(control_plane, namespace, "falco")
        write_token_kubeconfig(kubeconfig, control_plane.server, control_plane.ca_file, token, namespace)
        as_agent = await kr8s.asyncio.api(kubeconfig=str(kubeconfig), namespace=namespace)
        try:
            assert (await request(as_agent, "GET", configmaps))[0] == 403
            assert (await request(as_agent, "GET", f"{configmaps}/unrelated"))[0] == 403
            assert (await request(as_agent, "GET", f"{configmaps}/team-rules"))[0] == 200
            watch = {"fieldSelector": "metadata.name=team-rules", "watch": "1", "timeoutSeconds": "1"}
            assert (await request(as_agent, "GET", configmaps, params=watch))[0] == 200
        finally:
            if as_agent._session is not None:
                await as_agent._session.aclose()


async def test_an_agent_killed_mid_run_converges_on_restart_without_rewriting_unchanged_files(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    pods = await falco_pods(api, namespace, "falco")
    for name in ("stays", "changes", "goes"):
        await create(api, namespace, rulesfile(name, rule(name)))
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"]) as agents:
        agent = agents["node1"]
        assert len(agent.files(agent.rules_dir)) == 3
        stays = agent.rules_dir / "50-03-stays-inline.yaml"
        inode = stays.stat().st_ino
        agent.kill()
        await delete(api, namespace, "Rulesfile", "goes")
        await patch(api, namespace, "Rulesfile", "changes", {"spec": {"inlineRules": rule("changes", "evt.num > 2")}})
        agent.start()
        await agent.wait_ready()
        assert agent.files(agent.rules_dir) == {
            "50-03-changes-inline.yaml": rule("changes", "evt.num > 2").encode(),
            "50-03-stays-inline.yaml": rule("stays").encode(),
        }, "ready means the first full materialization is on disk"
        assert stays.stat().st_ino == inode
        hidden = sorted(entry.name for entry in agent.rules_dir.iterdir() if entry.name.startswith(".."))
        assert len(hidden) == 2, f"one generation and ..data, no orphans: {hidden}"
        assert hidden[0] == "..data" or hidden[1] == "..data"


async def test_two_falcos_in_one_namespace_get_only_what_their_instance_selector_picks(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    blue = await falco_pods(api, namespace, "blue", labels={"team": "blue"})
    green = await falco_pods(api, namespace, "green", labels={"team": "green"})
    await create(api, namespace, rulesfile("everyone", rule("everyone")))
    await create(
        api, namespace, rulesfile("blue-only", rule("blue"), instanceSelector={"matchLabels": {"team": "blue"}})
    )
    async with (
        running_agents(control_plane, tmp_path / "blue", namespace, "blue", blue, ["node1"]) as blue_agents,
        running_agents(control_plane, tmp_path / "green", namespace, "green", green, ["node1"]) as green_agents,
    ):
        blue_agent, green_agent = blue_agents["node1"], green_agents["node1"]
        assert sorted(blue_agent.files(blue_agent.rules_dir)) == [
            "50-03-blue-only-inline.yaml",
            "50-03-everyone-inline.yaml",
        ]
        assert sorted(green_agent.files(green_agent.rules_dir)) == ["50-03-everyone-inline.yaml"]
        falco_path = f"/apis/instance.falcosecurity.dev/v1alpha1/namespaces/{namespace}/falcos/green"
        await call(api, "PATCH", falco_path, body={"metadata": {"labels": {"team": "blue"}}}, content_type=MERGE)
        await wait_files(green_agent, green_agent.rules_dir, lambda f: len(f) == 2, "Falco relabel picked up")


async def installed_counts(api: kr8s.asyncio.Api, namespace: str) -> list[int]:
    counts = []
    for plural in ("rulesfiles", "configs", "plugins"):
        listing = await call(api, "GET", f"/apis/artifact.falcosecurity.dev/v1alpha1/namespaces/{namespace}/{plural}")
        counts += [((item.get("status") or {}).get("nodes") or {}).get("installed", -1) for item in listing["items"]]
    return counts


async def test_twenty_artifacts_and_no_change_for_a_minute_mean_no_writes_and_no_swaps(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    pods = await falco_pods(api, namespace, "falco")
    configmaps = f"/api/v1/namespaces/{namespace}/configmaps"
    for index in range(3):
        config_map: Json = {"metadata": {"name": f"map-{index}"}, "data": {"rules.yaml": rule(f"from_map_{index}")}}
        await call(api, "POST", configmaps, body=config_map)
        await create(api, namespace, rulesfile(f"mapped-{index}", configMapRef={"name": f"map-{index}"}))
    for index in range(10):
        await create(api, namespace, rulesfile(f"inline-{index}", rule(f"inline_{index}"), priority=10 + index))
    for index in range(5):
        spec = {"config": {"buffered_outputs": index % 2 == 0}}
        body: Json = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Config",
                "metadata": {"name": f"config-{index}"}, "spec": spec}  # fmt: skip
        await create(api, namespace, body)
    for name in ("alpha", "beta"):
        body = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Plugin", "metadata": {"name": name},
                "spec": {"config": {"initConfig": {"name": name}}}}  # fmt: skip
        await create(api, namespace, body)
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1", "node2"]) as agents:
        for agent in agents.values():
            published = await wait_for(
                partial(report, api, agent), lambda body: len((body.get("status") or {}).get("artifacts") or []) == 20,
                what=f"20 artifacts in the report of {agent.pod}",
            )  # fmt: skip
            entries = published["status"]["artifacts"]
            assert {item["state"] for item in entries} == {"Installed"}
            assert len(agent.files(agent.rules_dir)) == 13
        swaps = {node: agent.metric("falco_artifact_agent_generation_swaps_total", directory="rules")
                 for node, agent in agents.items()}  # fmt: skip
        # The operator's status of each artifact settles first: installed on the two agents that run.
        await wait_for(partial(installed_counts, api, namespace), lambda counts: counts == [2] * 20,
                       what="every artifact's status counting two installed agents")  # fmt: skip
        mark = AuditMark.now(control_plane.state.audit_log)
        await anyio.sleep(60)
        agent_user = f"system:serviceaccount:{namespace}:falco"
        writes = mark.writes_since(user=agent_user) + mark.writes_since(user=operator.username, namespace=namespace)
        assert writes == [], describe(writes)
        for node, agent in agents.items():
            assert agent.metric("falco_artifact_agent_generation_swaps_total", directory="rules") == swaps[node]
            assert agent.process is not None
            assert agent.process.poll() is None, "the agent is still running"


def file_hashes(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


async def falco_loads_the_agents_rules(api: kr8s.asyncio.Api, falco: RunningFalco, agent: AgentProcess) -> None:
    """Falco's sha256 metrics equal the files on disk and the sha256 the agent reports for each artifact."""
    on_disk = file_hashes(agent.files(agent.rules_dir))
    await falco.wait_rules(on_disk)
    reported = {Path(item["files"][0]).name: item["sha256"]
                for item in (await report(api, agent))["status"]["artifacts"]
                if item["kind"] == "Rulesfile" and item.get("files")}  # fmt: skip
    assert reported == on_disk


async def test_real_falco_loads_what_the_agent_writes_one_reload_per_change(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    pods = await falco_pods(api, namespace, "falco")
    container = seed("06-plugin-container.yaml")
    del container["spec"]["ociArtifact"]  # the library is the one built here, as if the OCI source had pulled it
    container["spec"]["config"]["libraryPath"] = str(falco_binaries.container_plugin)
    await create(api, namespace, container)
    # container.* fields exist only when the container plugin is loaded: Falco starts only if the fragment works.
    await create(
        api, namespace, rulesfile("containers", rule("in_container", "container.id != host and proc.name = nope"))
    )
    port = free_port()
    urls = {"node1": f"http://127.0.0.1:{port}"}
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"], urls) as agents:
        agent = agents["node1"]
        unreachable = await wait_for(partial(report, api, agent), lambda body: "falco" in body.get("status", {}),
                                     what="Falco's state in the report")  # fmt: skip
        assert unreachable["status"]["falco"] == {"reachable": False}
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
            await falco.wait_healthy()
            assert "Loaded plugin 'container@" in falco.log()
            loaded = await wait_entry(api, agent, "Rulesfile", "containers", lambda e: e.get("state") == "Loaded",
                                      "Rulesfile confirmed by Falco")  # fmt: skip
            assert loaded["message"] == "Falco loaded 50-03-containers-inline.yaml"
            plugin = entry(await report(api, agent), "Plugin", "container")
            assert (plugin["state"], plugin["message"]) == ("Loaded", "Falco runs plugin container 0.7.1; the "
                                                            "version could not be checked (the library is not "
                                                            "delivered from an OCI artifact)")  # fmt: skip
            assert (await report(api, agent))["status"]["falco"] == {"reachable": True, "version": "0.44.1"}
            await falco_loads_the_agents_rules(api, falco, agent)

            reloads = falco.reload_count()
            manifests = tmp_path / "four"
            manifests.mkdir()
            for index in range(4):
                body = rulesfile(f"batch-{index}", rule(f"batch_{index}", "evt.type = open and proc.name = nope"))
                body["metadata"]["namespace"] = namespace
                (manifests / f"{index}.json").write_text(json.dumps(body))
            control_plane.kubectl("apply", "-f", str(manifests))
            await wait_files(agent, agent.rules_dir, lambda files: len(files) == 5, "four new rules files")
            reloads = await falco.wait_reloaded(reloads)
            await wait_for(partial(report, api, agent), lambda body: len(body["status"]["artifacts"]) == 6,
                           what="six artifacts reported")  # fmt: skip
            await falco_loads_the_agents_rules(api, falco, agent)
            await anyio.sleep(2)  # a second reload for the same swap would come within this
            assert falco.reload_count() == reloads, "four Rulesfiles applied at once are one Falco reload"

            changed = rule("batch_0", "evt.type = openat and proc.name = nope")
            await patch(api, namespace, "Rulesfile", "batch-0", {"spec": {"inlineRules": changed}})
            await wait_files(agent, agent.rules_dir, lambda f: f.get("50-03-batch-0-inline.yaml") == changed.encode(),
                             "changed rules file")  # fmt: skip
            reloads = await falco.wait_reloaded(reloads)
            await wait_entry(api, agent, "Rulesfile", "batch-0", lambda e: e.get("generation") == 2, "generation 2")
            await falco_loads_the_agents_rules(api, falco, agent)

            await delete(api, namespace, "Rulesfile", "batch-1")
            await wait_files(agent, agent.rules_dir, lambda files: len(files) == 4, "a rules file removed")
            await falco.wait_reloaded(reloads)
            await wait_for(partial(report, api, agent), lambda body: len(body["status"]["artifacts"]) == 5,
                           what="five artifacts reported")  # fmt: skip
            await falco_loads_the_agents_rules(api, falco, agent)
            assert falco.reload_failures() == 0

            # A file this Falco would refuse (it has no k8saudit plugin) is withheld, not written: Falco keeps loading.
            needs_plugin = "- required_plugin_versions:\n  - {name: k8saudit, version: 0.1.0}\n"
            await create(api, namespace, rulesfile("audit", needs_plugin, priority=90))
            withheld = await wait_entry(api, agent, "Rulesfile", "audit",
                                        lambda e: e.get("reason") == "RequirementsNotMet", "withheld")  # fmt: skip
            assert withheld["state"] == "Failed"
            assert "add a Plugin for k8saudit" in withheld["message"]
            assert "90-03-audit-inline.yaml" not in agent.files(agent.rules_dir)
            assert falco.reload_failures() == 0
            assert entry(await report(api, agent), "Rulesfile", "containers")["state"] == "Loaded"


async def test_an_agent_that_cannot_watch_is_not_ready_and_turns_unhealthy(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    # The namespace's default ServiceAccount has no Role: every list is refused.
    agent = AgentProcess(control_plane, tmp_path, namespace, "default", "no-such-pod", "", "node1",
                         extra_args=("--stuck-after=2",))  # fmt: skip
    agent.start()
    try:
        assert (await wait_for(partial(anyio.to_thread.run_sync, agent.get, "/healthz"), lambda r: r[0] != 0,
                               what="agent probes up"))[0] == 200  # fmt: skip
        unhealthy = await wait_for(partial(anyio.to_thread.run_sync, agent.get, "/healthz"), lambda r: r[0] == 503,
                                   timeout=20, what="/healthz failing")  # fmt: skip
        assert "informers" in unhealthy[1]
        assert agent.get("/readyz")[0] == 503
        assert agent.metric("falco_artifact_agent_informer_healthy", informer=f"rulesfiles in {namespace}") == 0
    finally:
        agent.stop()
