"""``spec.imageDefaults`` end to end on the local control plane: the operator renders the Falco (its falco.yaml in the
ConfigMap, the agent's arguments in the DaemonSet, ``status.artifacts``), an agent plays one of its pods, and real
Falco runs with that falco.yaml over the harness's image layout: the image's ``/etc/falco/falco_rules.yaml`` and
``/usr/share/falco/plugins/libcontainer.so`` as the official image has them, the agent's directories mounted at
``/etc/falco/rules.d`` and ``/etc/falco/config.d`` as the pod's emptyDirs are (``e2e.falco.ImageLayout``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio
import pytest
from ruamel.yaml import YAML

from e2e.agent import FALCO_API, AgentProcess, rulesfile, wait_falco_pods
from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.falco import RULES_METRIC, FalcoBinaries, ImageLayout, RunningFalco, run_falco
from e2e.kube import call, request
from e2e.oci_artifacts import push_rules
from e2e.registry import Registry, start_registry
from e2e.wait import wait_for
from falco_operator.artifacts import PLUGINS_CONFIG_FILE, sha256_hex
from falco_operator.artifacts.image_defaults import DEFAULT_RULES_CONFIG_FILE, IMAGE_RULES_PATH
from falco_operator.instance.falcoconfig import CONFIG_DIR, RULES_DIR
from tests.integration.agent_support import create, delete, entry, report, running_agents, wait_entry, wait_files

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds", "operator")]
DEFAULT_RULES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "falco-rules" / "falco_rules.yaml"
IMAGE_RULES = DEFAULT_RULES.read_bytes() + b"\n# the Falco image's copy\n"
"""The image's falco_rules.yaml: Falco's default rules, with bytes of its own so its sha256 tells it apart."""
IMAGE_DEFAULTS = {"rules": [IMAGE_RULES_PATH], "plugins": ["container"]}
IDLE = {"selected": 0, "programmed": 0, "failed": 0}
IMAGE_REPORT = {"rules": [IMAGE_RULES_PATH], "rulesSha256": sha256_hex(IMAGE_RULES), "plugins": ["container"]}
"""What an agent with the image's copy reports of the image's defaults while no artifact replaces one."""
AGENT_CONTAINER = "artifact-operator"
REGISTRY_ARGS = ("--pull-retry-max=1", "--pull-timeout=5", "--pull-deadline=20", "--allow-private-registries")
RULES_REPOSITORY = "falcosecurity/rules/falco-rules"


@pytest.fixture(autouse=True)
def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("Falco sees the image layout through a mount namespace of its own: needs root")


@pytest.fixture
def image_copy(tmp_path: Path) -> Path:
    """What the pod's image-defaults init container copies for the agent: the image's rules file."""
    copy = tmp_path / "image-defaults"
    copy.mkdir()
    (copy / "falco_rules.yaml").write_bytes(IMAGE_RULES)
    return copy


@pytest.fixture
def plain_registry(tmp_path: Path) -> Iterator[Registry]:
    registry = start_registry(tmp_path / "registry", tls=False, auth=False)
    try:
        yield registry
    finally:
        registry.stop()


async def create_falco(api: kr8s.asyncio.Api, namespace: str, name: str, spec: Json) -> dict[str, Json]:
    body = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco", "metadata": {"name": name},
            "spec": spec}  # fmt: skip
    await call(api, "POST", f"{FALCO_API}/namespaces/{namespace}/falcos", body=body)
    return await wait_falco_pods(api, namespace, name)


async def falco_object(api: kr8s.asyncio.Api, namespace: str, name: str) -> Json:
    _, body = await request(api, "GET", f"{FALCO_API}/namespaces/{namespace}/falcos/{name}")
    return body or {}


async def wait_artifact_status(api: kr8s.asyncio.Api, namespace: str, name: str, expected: Json) -> Json:
    """The Falco once its ``status.artifacts`` is ``expected`` and its pods are available and up to date (a
    change of ``imageDefaults`` changes falco.yaml and rolls them): its status has settled."""

    def settled(falco: Json) -> bool:
        status = falco.get("status") or {}
        states = {c["type"]: c["status"] for c in status.get("conditions") or []}
        current = status.get("observedGeneration") == falco["metadata"]["generation"]
        rested = states.get("Available") == "True" and states.get("Progressing") == "False"
        return current and rested and status.get("artifacts") == expected

    return await wait_for(lambda: falco_object(api, namespace, name), settled, timeout=60,
                          what=f"status.artifacts of Falco {name}, its pods available and up to date")  # fmt: skip


async def expect_no_status_write(api: kr8s.asyncio.Api, namespace: str, name: str, settled: Json) -> None:
    """Zero churn: the Falco is not written again while nothing changes (a status patch that never matched what
    it reads back would write at every pass, and each write causes the next)."""
    await anyio.sleep(3)
    now = await falco_object(api, namespace, name)
    assert now["metadata"]["resourceVersion"] == settled["metadata"]["resourceVersion"], now.get("status")


async def rendered(api: kr8s.asyncio.Api, namespace: str, name: str) -> tuple[Json, list[str]]:
    """The Falco's falco.yaml (its ConfigMap) and its agent's arguments (its DaemonSet), as the operator made them."""
    _, configmap = await request(api, "GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
    config: Json = YAML(typ="safe").load(configmap["data"]["falco.yaml"])
    _, daemonset = await request(api, "GET", f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}")
    pod = daemonset["spec"]["template"]["spec"]
    (agent,) = [c for c in [*pod.get("initContainers", []), *pod["containers"]] if c["name"] == AGENT_CONTAINER]
    return config, list(agent.get("args") or [])


async def wait_report(api: kr8s.asyncio.Api, agent: AgentProcess, image_defaults: Json | None) -> Json:
    """The agent's report once its ``status.imageDefaults`` is ``image_defaults`` (None: absent)."""

    def says(body: Json) -> bool:
        return bool(body) and (body.get("status") or {}).get("imageDefaults") == image_defaults

    return await wait_for(lambda: report(api, agent), says, timeout=15, what=f"imageDefaults in {agent.pod}'s report")


def in_the_harness(config: Json) -> Json:
    """The operator's falco.yaml for ``run_falco``: everything as rendered but the web server's address and port
    (a loopback port of the test's), the engine (``nodriver``: no kernel driver here) and logging (to stderr)."""
    kept = {"webserver", "engine", "log_stderr", "log_syslog", "log_level"}
    return {key: value for key, value in config.items() if key not in kept}


def image_layout(agent: AgentProcess, binaries: FalcoBinaries, image_rules: Path) -> ImageLayout:
    return ImageLayout(plugins=[binaries.container_plugin], files={IMAGE_RULES_PATH: image_rules},
                       volumes={RULES_DIR: agent.rules_dir, CONFIG_DIR: agent.config_dir})  # fmt: skip


def pods_falco(
    tmp_path: Path, agent: AgentProcess, config: Json, binaries: FalcoBinaries, image_copy: Path, port: int
) -> Any:
    """Real Falco with the operator's falco.yaml over the image layout, the agent's directories as its volumes."""
    return run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir, binaries=binaries,
                     web_port=port, extra_config=in_the_harness(config),
                     image=image_layout(agent, binaries, image_copy / "falco_rules.yaml"))  # fmt: skip


async def loaded_plugins(falco: RunningFalco) -> Json:
    return dict((await falco.versions()).get("plugin_versions") or {})


async def test_a_falco_with_image_defaults_loads_the_image_rules_and_container_plugin_and_a_bare_one_stays_idle(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path, falco_binaries: FalcoBinaries,
    image_copy: Path,
) -> None:  # fmt: skip
    for name, spec in (("defaults", {"imageDefaults": True}), ("bare", {})):
        pods = await create_falco(api, namespace, name, spec)
        expected = IDLE | {"imageDefaults": IMAGE_DEFAULTS} if spec else IDLE
        settled = await wait_artifact_status(api, namespace, name, expected)
        config, args = await rendered(api, namespace, name)
        flag = [arg for arg in args if arg.startswith("--image-defaults-dir=")]
        if spec:
            assert config["rules_files"] == [IMAGE_RULES_PATH, RULES_DIR]
            assert flag == ["--image-defaults-dir=/etc/falco/image-defaults"]
        else:
            assert config["rules_files"] == [RULES_DIR]
            assert flag == []
        # The harness's agent gets the same flag, pointing at the harness's copy.
        extra_args = (f"--image-defaults-dir={image_copy}",) if flag else ()
        port = free_port()
        async with running_agents(control_plane, tmp_path / name, namespace, name, pods, ["node1"],
                                  {"node1": f"http://127.0.0.1:{port}"}, extra_args) as agents:  # fmt: skip
            agent = agents["node1"]
            if spec:
                # The agent, a native sidecar, writes its fragments before Falco starts; here the test waits.
                fragments = await wait_files(agent, agent.config_dir, lambda f: PLUGINS_CONFIG_FILE in f, "plugins")
                assert b"library_path: libcontainer.so\n" in fragments[PLUGINS_CONFIG_FILE]
            with pods_falco(tmp_path / name, agent, config, falco_binaries, image_copy, port) as falco:
                if spec:
                    await falco.wait_rules({"falco_rules.yaml": sha256_hex(IMAGE_RULES)})
                    assert await loaded_plugins(falco) == {"container": "0.7.1"}
                else:
                    await falco.wait_healthy()
                    assert await falco.rules_hashes() == {}, "the image's rules are there, and not loaded"
                    assert await loaded_plugins(falco) == {}, "the image's plugin is there, and not loaded"
                assert agent.files(agent.rules_dir) == {}, "zero artifacts"
                assert agent.files(agent.plugins_dir) == {}
                reported = (await wait_report(api, agent, IMAGE_REPORT if spec else None)).get("status") or {}
                assert reported.get("artifacts") in (None, [])
        await expect_no_status_write(api, namespace, name, settled)
    # Turned off, the Falco says nothing of the image any more, and its status settles again.
    await call(api, "PATCH", f"{FALCO_API}/namespaces/{namespace}/falcos/defaults",
               body={"spec": {"imageDefaults": False}}, content_type="application/merge-patch+json")  # fmt: skip
    settled = await wait_artifact_status(api, namespace, "defaults", IDLE)
    await expect_no_status_write(api, namespace, "defaults", settled)


async def test_falco_rules_from_oci_replace_the_image_copy_and_it_comes_back_when_the_rulesfile_goes(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path, falco_binaries: FalcoBinaries,
    image_copy: Path, plain_registry: Registry,
) -> None:  # fmt: skip
    oci_rules = DEFAULT_RULES.read_bytes()
    push_rules(plain_registry, RULES_REPOSITORY, "4", oci_rules)  # config name falco-rules, as falcoctl publishes
    pods = await create_falco(api, namespace, "falco", {"imageDefaults": True})
    config, _ = await rendered(api, namespace, "falco")
    port = free_port()
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"],
                              {"node1": f"http://127.0.0.1:{port}"},
                              (f"--image-defaults-dir={image_copy}", *REGISTRY_ARGS)) as agents:  # fmt: skip
        agent = agents["node1"]
        await wait_files(agent, agent.config_dir, lambda f: PLUGINS_CONFIG_FILE in f, "plugins fragment")
        with pods_falco(tmp_path, agent, config, falco_binaries, image_copy, port) as falco:
            await falco.wait_rules({"falco_rules.yaml": sha256_hex(IMAGE_RULES)})
            oci = {"image": {"repository": RULES_REPOSITORY, "tag": "4"},
                   "registry": {"name": plain_registry.host, "plainHTTP": True}}  # fmt: skip
            await create(api, namespace, rulesfile("falco-rules", ociArtifact=oci))
            loaded = await wait_entry(api, agent, "Rulesfile", "falco-rules", lambda e: e.get("state") == "Loaded",
                                      "the default rules from OCI confirmed by Falco")  # fmt: skip
            (written,) = [Path(path).name for path in loaded["files"]]
            assert DEFAULT_RULES_CONFIG_FILE in agent.files(agent.config_dir)
            await wait_report(api, agent, {"plugins": ["container"], "replacedBy": ["Rulesfile/falco-rules"]})
            # One copy: the OCI one in rules.d, not the image's file, and rules.d once.
            await falco.wait_rules({written: sha256_hex(oci_rules)})
            rules_lines = [line for line in (await falco.metrics()).splitlines() if line.startswith(RULES_METRIC)]
            assert len(rules_lines) == 1, rules_lines
            await delete(api, namespace, "Rulesfile", "falco-rules")
            await wait_files(agent, agent.config_dir, lambda f: DEFAULT_RULES_CONFIG_FILE not in f, "fragment gone")
            await falco.wait_rules({"falco_rules.yaml": sha256_hex(IMAGE_RULES)})
            after = await wait_report(api, agent, IMAGE_REPORT)
            assert entry(after, "Rulesfile", "falco-rules") == {}
