"""The artifact agent on the real control plane: real processes, real ServiceAccount tokens bound to the Role the
operator built for their Falco, files in temporary directories."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import kr8s.asyncio
import pytest

from e2e.controlplane import ControlPlane
from e2e.kube import call
from e2e.operator import RunningOperator, run_operator
from tests.integration.agent_support import (
    create,
    entry,
    falco_pods,
    report,
    rule,
    rulesfile,
    running_agents,
    seed,
    wait_entry,
    wait_files,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
MERGE = "application/merge-patch+json"


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, crds: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    with run_operator(control_plane, tmp_path_factory.mktemp("operator")) as running:
        yield running


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
        assert f"library_path: {node1.plugins_dir}/container.so\n" in fragment
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
    """Samples a directory as fast as it can from a thread: every ``..data`` target and visible set it saw."""

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
            except OSError:
                continue
            if not self.targets or self.targets[-1] != target:
                self.targets.append(target)
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
                __import__("json").dumps(rulesfile(f"batch-{index}", rule(f"batch_{index}")) |
                                         {"metadata": {"name": f"batch-{index}", "namespace": namespace}})
            )  # fmt: skip
        with DirectoryWatcher(agent.rules_dir) as watcher:
            control_plane.kubectl("apply", "-f", str(manifests))
            await wait_files(agent, agent.rules_dir, lambda files: len(files) == 5, "four new rules files")
        assert len(watcher.targets) == 2, f"one ..data rename, saw {watcher.targets}"
        sizes = sorted(len(names) for names in watcher.visible_sets)
        assert set(sizes) <= {1, 5}, f"a state with only some of the four was visible: {sizes}"
        assert agent.metric("falco_artifact_agent_generation_swaps_total", directory="rules") == swaps + 1
