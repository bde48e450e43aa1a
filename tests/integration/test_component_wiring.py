"""A Falco wired to its Components on the local control plane: the operator (its own token) generates the Config
and Plugin, the agent delivers them, real Falco loads them. The Component controller runs the Components (their pods
are simulated); a Component is made unavailable by scaling it to no pods."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio
import pytest

from e2e.agent import falco_pods
from e2e.audit import AuditMark, describe
from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.falco import FalcoBinaries, RunningFalco, image_plugins_command, run_falco
from e2e.kube import call, request
from e2e.operator import NAMESPACE, RunningOperator, run_operator
from e2e.wait import wait_for
from falco_operator.artifacts import parse_config
from falco_operator.artifacts.yamldoc import load_yaml
from tests.integration.agent_support import ARTIFACT_API, MERGE, entry, report, running_agents, wait_files

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
FALCO_API = "/apis/instance.falcosecurity.dev/v1alpha1"
NODES = ["node1", "node2", "node3"]
SIDEKICK_FILE = "60-03-falco-wiring-sidekick-inline.yaml"
PLUGINS_FILE = "99-03-plugins-config-inline.yaml"


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, crds: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    # A short sync period: the steady-state check must see periodic resyncs that change nothing.
    with run_operator(control_plane, tmp_path_factory.mktemp("operator"), "--sync-period=5") as running:
        yield running


def component(name: str, kind: str) -> Json:
    # No pods until set_available: the Component controller reports it Available=False (NoPods) meanwhile.
    return {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Component", "metadata": {"name": name},
            "spec": {"component": {"type": kind}, "replicas": 0}}  # fmt: skip


async def create_component(api: kr8s.asyncio.Api, namespace: str, name: str, kind: str) -> None:
    await call(api, "POST", f"{FALCO_API}/namespaces/{namespace}/components", body=component(name, kind))


async def set_available(api: kr8s.asyncio.Api, namespace: str, name: str, available: bool) -> None:
    """Scale the Component to one pod (or none) and wait until the Component controller reports it Available (or
    not)."""
    path = f"{FALCO_API}/namespaces/{namespace}/components/{name}"
    await call(api, "PATCH", path, body={"spec": {"replicas": 1 if available else 0}}, content_type=MERGE)

    async def available_condition() -> str | None:
        _, body = await request(api, "GET", path)
        states = [c["status"] for c in ((body or {}).get("status") or {}).get("conditions") or []
                  if c["type"] == "Available"]  # fmt: skip
        return states[0] if states else None

    await wait_for(available_condition, lambda state: state == ("True" if available else "False"), timeout=60,
                   what=f"Component {name} Available={available}")  # fmt: skip


async def refer(api: kr8s.asyncio.Api, namespace: str, falco: str, **references: str | None) -> None:
    spec = {role: ({"name": name} if name else None) for role, name in references.items()}
    await call(api, "PATCH", f"{FALCO_API}/namespaces/{namespace}/falcos/{falco}", body={"spec": spec},
               content_type=MERGE)  # fmt: skip


async def components_ready(api: kr8s.asyncio.Api, namespace: str, falco: str) -> Json | None:
    _, body = await request(api, "GET", f"{FALCO_API}/namespaces/{namespace}/falcos/{falco}")
    for condition in ((body or {}).get("status") or {}).get("conditions") or []:
        if condition["type"] == "ComponentsReady":
            return dict(condition)
    return None


async def wait_condition(api: kr8s.asyncio.Api, namespace: str, falco: str, reason: str | None) -> Json | None:
    """Wait for ComponentsReady with ``reason`` (None: no such condition)."""
    return await wait_for(partial(components_ready, api, namespace, falco),
                          lambda c: (c or {}).get("reason") == reason, timeout=30,
                          what=f"ComponentsReady {reason} on Falco {falco}")  # fmt: skip


async def artifact(api: kr8s.asyncio.Api, namespace: str, plural: str, name: str) -> Json | None:
    status, body = await request(api, "GET", f"{ARTIFACT_API}/namespaces/{namespace}/{plural}/{name}")
    return body if status == 200 and isinstance(body, dict) else None


async def wait_artifact(api: kr8s.asyncio.Api, namespace: str, plural: str, name: str, present: bool) -> Json | None:
    return await wait_for(partial(artifact, api, namespace, plural, name), lambda found: (found is not None) == present,
                          timeout=30, what=f"{plural}/{name} {'present' if present else 'gone'}")  # fmt: skip


async def test_a_falco_naming_components_gets_generated_artifacts_only_when_they_are_ready(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane
) -> None:
    await falco_pods(api, namespace, "falco")
    await falco_pods(api, namespace, "other")
    await create_component(api, namespace, "sidekick", "falcosidekick")
    await refer(api, namespace, "falco", sidekick="sidekick")
    waiting = await wait_condition(api, namespace, "falco", "ComponentNotAvailable")
    assert waiting is not None
    assert waiting["status"] == "False"
    assert await artifact(api, namespace, "configs", "falco-wiring-sidekick") is None  # nothing half-applied

    await set_available(api, namespace, "sidekick", True)
    config = await wait_artifact(api, namespace, "configs", "falco-wiring-sidekick", True)
    assert config is not None
    assert config["spec"]["config"]["http_output"] == {"enabled": True, "url": f"http://sidekick.{namespace}.svc:2801/"}
    parse_config(json.dumps(config["spec"]["config"]))  # what the agent accepts
    labels = config["metadata"]["labels"]
    assert labels["artifact.falcosecurity.dev/for-falco"] == "falco"  # only that Falco's agents load it
    assert [owner["name"] for owner in config["metadata"]["ownerReferences"]] == ["falco"]
    ready = await wait_condition(api, namespace, "falco", "Wired")
    assert ready is not None
    assert f"http://sidekick.{namespace}.svc:2801/" in ready["message"]
    assert await components_ready(api, namespace, "other") is None

    # Briefly unavailable: the delivered wiring stays (alerts flow again when it is back), the condition says so.
    await set_available(api, namespace, "sidekick", False)
    kept = await wait_condition(api, namespace, "falco", "ComponentNotAvailable")
    assert kept is not None
    assert "earlier wiring stays" in kept["message"]
    assert await artifact(api, namespace, "configs", "falco-wiring-sidekick") is not None
    await set_available(api, namespace, "sidekick", True)
    await wait_condition(api, namespace, "falco", "Wired")

    # The wrong type, then a missing Component, then the right one.
    await refer(api, namespace, "falco", metacollector="sidekick")
    wrong = await wait_condition(api, namespace, "falco", "WrongComponentType")
    assert wrong is not None
    assert "is of type falcosidekick, not metacollector" in wrong["message"]
    assert await artifact(api, namespace, "plugins", "falco-wiring-metacollector") is None
    await refer(api, namespace, "falco", metacollector="meta")
    await wait_condition(api, namespace, "falco", "ComponentNotFound")
    await create_component(api, namespace, "meta", "metacollector")
    await set_available(api, namespace, "meta", True)
    plugin = await wait_artifact(api, namespace, "plugins", "falco-wiring-metacollector", True)
    assert plugin is not None
    assert plugin["spec"]["config"] == {
        "name": "k8smeta",
        "libraryPath": "libk8smeta.so",
        "initConfig": {
            "collectorHostname": f"meta.{namespace}.svc",
            "collectorPort": 45000,
            "nodeName": "${FALCO_K8S_NODE_NAME}",
        },
    }
    await wait_condition(api, namespace, "falco", "Wired")

    # Steady state: resyncs every 5 s change nothing, so nothing is written.
    await anyio.sleep(3)
    mark = AuditMark.now(control_plane.state.audit_log)
    await anyio.sleep(12)
    writes = [w for w in mark.writes_since(user=operator.username)
              if w["objectRef"].get("namespace") in (namespace, NAMESPACE)
              and w["objectRef"].get("resource") != "leases"]  # fmt: skip
    assert writes == [], f"operator writes in steady state: {describe(writes)}"

    # A deleted Component takes its wiring away; so does a removed reference.
    await call(api, "DELETE", f"{FALCO_API}/namespaces/{namespace}/components/sidekick")
    await wait_artifact(api, namespace, "configs", "falco-wiring-sidekick", False)
    gone = await wait_condition(api, namespace, "falco", "ComponentNotFound")
    assert gone is not None
    assert f"Component {namespace}/sidekick does not exist" in gone["message"]
    await refer(api, namespace, "falco", sidekick=None, metacollector=None)
    await wait_artifact(api, namespace, "plugins", "falco-wiring-metacollector", False)
    await wait_condition(api, namespace, "falco", None)


def support_config(falco: RunningFalco, binaries: FalcoBinaries, *, command_prefix: list[str] | None = None,
                   environment: dict[str, str] | None = None) -> Json:  # fmt: skip
    """The configuration Falco itself builds from the same falco.yaml and config.d (``falco --support``)."""
    command = [str(binaries.falco), "-c", str(falco.config_path), "--support"]
    answer = subprocess.run(command if command_prefix is None else [*command_prefix, *command], capture_output=True,
                            timeout=60, env=environment, check=False)  # fmt: skip
    assert answer.returncode == 0, answer.stdout.decode(errors="replace")[-3000:]
    config: Json = json.loads(json.loads(answer.stdout.decode().splitlines()[-1])["config"])
    return config


async def test_real_falco_sends_json_alerts_to_the_sidekick_service_and_reloads_once_each_way(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    pods = await falco_pods(api, namespace, "falco")
    await create_component(api, namespace, "sidekick", "falcosidekick")
    await set_available(api, namespace, "sidekick", True)
    await create_component(api, namespace, "meta", "metacollector")
    await set_available(api, namespace, "meta", True)
    port = free_port()
    node1 = tmp_path / "node1"
    url = f"http://sidekick.{namespace}.svc:2801/"
    with run_falco(tmp_path / "falco", node1 / "rules.d", node1 / "config.d", node1 / "plugins",
                   binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
        urls = {"node1": f"http://127.0.0.1:{port}"}
        async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"], urls) as agents:
            agent = agents["node1"]
            assert support_config(falco, falco_binaries)["json_output"] == "false"  # the base falco.yaml's
            reloads = falco.reload_count()
            await refer(api, namespace, "falco", sidekick="sidekick")
            await wait_files(agent, agent.config_dir, lambda f: SIDEKICK_FILE in f, "the sidekick wiring", timeout=30)
            assert await falco.wait_reloaded(reloads) == reloads + 1
            await falco.expect_no_reload(reloads + 1)
            effective = support_config(falco, falco_binaries)  # Falco's scalars come back as strings
            assert effective["http_output"] == {"enabled": "true", "url": url}
            assert (effective["json_output"], effective["json_include_output_property"]) == ("true", "true")
            state = await wait_for(lambda: report(api, agent),
                                   lambda r: entry(r, "Config", "falco-wiring-sidekick").get("state") == "Installed",
                                   timeout=30, what="the wiring Config in the agent's report")  # fmt: skip
            assert entry(state, "Config", "falco-wiring-sidekick")["state"] == "Installed"

            await refer(api, namespace, "falco", sidekick=None)
            await wait_files(agent, agent.config_dir, lambda f: SIDEKICK_FILE not in f, "the wiring removed")
            assert await falco.wait_reloaded(reloads + 1) == reloads + 2
            await falco.expect_no_reload(reloads + 2)
            effective = support_config(falco, falco_binaries)
            assert "http_output" not in effective
            assert effective["json_output"] == "false"

            # k8smeta: the entry reaches Falco, which cannot load it here: ../shared/falco has no libk8smeta.so.
            failures = falco.reload_failures()
            await refer(api, namespace, "falco", metacollector="meta")
            files = await wait_files(agent, agent.config_dir, lambda f: b"k8smeta" in f.get(PLUGINS_FILE, b""),
                                     "the k8smeta entry", timeout=30)  # fmt: skip
            delivered = load_yaml(files[PLUGINS_FILE])
            assert delivered["load_plugins"] == ["k8smeta"]
            assert delivered["plugins"][0]["library_path"] == "libk8smeta.so"
            await falco.wait_reload_failures(failures)
            assert "cannot load plugin /usr/share/falco/plugins/libk8smeta.so" in falco.log()
            assert falco.alive()  # a refused reload keeps Falco running as it was
            plugin_name = "falco-wiring-metacollector"
            refused = await wait_for(lambda: report(api, agent),
                                     lambda r: entry(r, "Plugin", plugin_name).get("state") == "Refused",
                                     timeout=45, what="the k8smeta Plugin refused in the agent's report")  # fmt: skip
            assert "hot restart failure" in entry(refused, "Plugin", plugin_name)["message"]

            # With a library at the image's path (a stand-in: the json plugin under k8smeta's file name), Falco
            # parses the entry and expands the node name from the falco container's environment.
            json_plugin = falco_binaries.container_plugin.parent / "libjson.so"
            assert json_plugin.is_file(), "../shared/falco/plugins holds the json plugin (README)"
            stand_in = tmp_path / "stand-in" / "libk8smeta.so"
            stand_in.parent.mkdir()
            shutil.copyfile(json_plugin, stand_in)
            prefix = image_plugins_command([], [stand_in], tmp_path / "image-share")
            parsed = support_config(falco, falco_binaries, command_prefix=prefix,
                                    environment={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                 "FALCO_K8S_NODE_NAME": "node1"})  # fmt: skip
            assert parsed["plugins"] == [
                {
                    "name": "k8smeta",
                    "library_path": "libk8smeta.so",
                    "init_config": {
                        "collectorHostname": f"meta.{namespace}.svc",
                        "collectorPort": "45000",
                        "nodeName": "node1",
                    },
                }
            ]

            await refer(api, namespace, "falco", metacollector=None)
            await wait_files(agent, agent.config_dir, lambda f: PLUGINS_FILE not in f, "the k8smeta entry removed")
