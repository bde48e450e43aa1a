"""``--image-defaults-dir`` with real Falco: with zero Plugins the agent's plugins fragment configures the image's
container plugin, so Falco loads the image's default rules (listed before ``rules.d``, as the operator renders
falco.yaml for ``spec.imageDefaults``), and a Rulesfile using their macros is written and loaded; a config fragment
like the one the agent writes for default rules from OCI leaves the image's file out of what Falco loads."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import kr8s.asyncio
import pytest

from e2e.agent import falco_pods
from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.falco import FalcoBinaries, run_falco
from falco_operator.artifacts import PLUGINS_CONFIG_FILE, sha256_hex
from falco_operator.artifacts.image_defaults import DEFAULT_RULES_CONFIG, DEFAULT_RULES_CONFIG_FILE
from tests.integration.agent_support import create, running_agents, wait_entry, wait_files

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds", "operator")]
DEFAULT_RULES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "falco-rules" / "falco_rules.yaml"
USES_DEFAULTS = """\
- rule: shell in a container
  desc: uses the default rules' macros and the container plugin's fields
  condition: spawned_process and container and proc.name in (shell_binaries)
  output: shell in %container.id
  priority: NOTICE
"""


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("Falco sees an image's plugins directory through a mount namespace of its own: needs root")


async def test_with_zero_plugins_falco_loads_the_image_rules_with_the_image_container_plugin(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path, falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    needs_root()
    defaults = tmp_path / "image-defaults"
    defaults.mkdir()
    shutil.copy(DEFAULT_RULES, defaults / "falco_rules.yaml")
    await create(api, namespace, {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
                                  "metadata": {"name": "team"}, "spec": {"inlineRules": USES_DEFAULTS}})  # fmt: skip
    pods = await falco_pods(api, namespace, "falco")
    port = free_port()
    urls = {"node1": f"http://127.0.0.1:{port}"}
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"], urls,
                              extra_args=(f"--image-defaults-dir={defaults}",)) as agents:  # fmt: skip
        agent = agents["node1"]
        await wait_files(agent, agent.rules_dir, lambda files: "50-03-team-inline.yaml" in files,
                         "the Rulesfile using the default rules' macros", timeout=20)  # fmt: skip
        fragment = agent.files(agent.config_dir)[PLUGINS_CONFIG_FILE]
        assert b"library_path: libcontainer.so\n" in fragment
        assert b"load_plugins:\n- container\n" in fragment
        assert agent.files(agent.plugins_dir) == {}
        image_rules = defaults / "falco_rules.yaml"
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries, web_port=port, image_plugins=[falco_binaries.container_plugin],
                       extra_config={"rules_files": [str(image_rules), str(agent.rules_dir)]}) as falco:  # fmt: skip
            await falco.wait_healthy()
            assert (await falco.versions())["plugin_versions"] == {"container": "0.7.1"}
            await falco.wait_rules({"falco_rules.yaml": sha256_hex(image_rules.read_bytes()),
                                    "50-03-team-inline.yaml": sha256_hex(USES_DEFAULTS.encode())})  # fmt: skip
            await wait_entry(api, agent, "Rulesfile", "team", lambda e: e.get("state") == "Loaded",
                             "Rulesfile confirmed by Falco")  # fmt: skip


@pytest.mark.parametrize("override_entry", [True, False], ids=["config_files entry with override", "directory only"])
async def test_the_default_rules_fragment_leaves_the_image_rules_file_out_only_with_an_override_entry(
    tmp_path: Path, falco_binaries: FalcoBinaries, override_entry: bool
) -> None:
    """Falco 0.44.1 appends the lists of config.d fragments (``strategy: append``, the default of a
    ``config_files`` entry): the fragment the agent writes while a Rulesfile delivers the default rules from OCI
    replaces falco.yaml's ``rules_files`` only when falco.yaml also lists that file with ``strategy: override``
    (a missing file is skipped). Here the fragment's ``/etc/falco/rules.d`` is rewritten to this test's."""
    rules_dir, config_dir, plugins_dir = (tmp_path / name for name in ("rules", "config", "plugins"))
    rules_dir.mkdir()
    config_dir.mkdir()
    shutil.copy(DEFAULT_RULES, rules_dir / "00-01-falco-rules-oci.yaml")
    fragment = config_dir / DEFAULT_RULES_CONFIG_FILE
    fragment.write_bytes(DEFAULT_RULES_CONFIG.replace(b"/etc/falco/rules.d", str(rules_dir).encode()))
    image_rules = tmp_path / "falco_rules.yaml"
    shutil.copy(DEFAULT_RULES, image_rules)
    config_files: list[object] = [str(config_dir)]
    if override_entry:
        config_files.append({"path": str(fragment), "strategy": "override"})
    extra = {"rules_files": [str(image_rules), str(rules_dir)], "config_files": config_files}
    with run_falco(tmp_path / "falco", rules_dir, config_dir, plugins_dir, binaries=falco_binaries,
                   load_container_plugin=True, extra_config=extra) as falco:  # fmt: skip
        await falco.wait_healthy()
        loaded = sorted(await falco.rules_hashes())
        log = falco.log()
    if override_entry:
        assert loaded == ["00-01-falco-rules-oci.yaml"]
        assert log.count("00-01-falco-rules-oci.yaml | schema validation") == 1, "rules.d once"
    else:
        assert loaded == ["00-01-falco-rules-oci.yaml", "falco_rules.yaml"], "the fragment's list is appended"
