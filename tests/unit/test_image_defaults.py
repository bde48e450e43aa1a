"""``--image-defaults-dir`` (a Falco with ``spec.imageDefaults``): the plugins fragment always configures the image's
container plugin (a Plugin named container replaces it), and the set is judged as Falco loads it, after the
image's ``falco_rules.yaml`` with the container plugin loaded."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from artifact_agent.cli import build_parser
from artifact_agent.planner import PassPlanner
from artifact_agent.report import report_status
from falco_operator.api.plain import Config, Plugin, Rulesfile
from falco_operator.artifacts import (
    CONFIG_DIR,
    DIRECTORIES,
    PLUGINS_CONFIG_FILE,
    ArtifactKey,
    Content,
    Delivered,
    Medium,
    Plan,
    load_yaml,
    plan,
    sha256_hex,
)
from falco_operator.artifacts.image_defaults import (
    CONTAINER_ENTRY,
    DEFAULT_RULES_CONFIG_FILE,
    IMAGE_RULES_PATH,
    ImageDefaults,
)
from falco_operator.artifacts.needs import ArtifactNeeds, artifact_needs
from falco_operator.artifacts.rules import rules_set_check
from falco_operator.artifacts.yamldoc import plain

DEFAULT_RULES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "falco-rules" / "falco_rules.yaml"
PLUGINS = "/var/lib/falco-artifacts/plugins"
USES_DEFAULTS = """\
- rule: shell in a container
  desc: uses the default rules' macros and the container plugin's fields
  condition: spawned_process and container and proc.name in (shell_binaries)
  output: shell in %container.id (ns=%k8s.ns.name)
  priority: NOTICE
"""
USES_SPAWNED_PROCESS = """\
- rule: any process
  desc: uses a macro of the default rules only
  condition: spawned_process and proc.name = my_shell
  output: o %proc.name
  priority: NOTICE
"""
APPENDS_TO_DEFAULTS = """\
- list: shell_binaries
  items: [my_shell]
  override:
    items: append
"""
NEEDS_CONTAINER = """\
- required_plugin_versions:
  - name: container
    version: 0.4.0
- rule: container id seen
  desc: d
  condition: evt.type = execve and container.id != host
  output: o %container.id
  priority: NOTICE
"""


def rulesfile(name: str, text: str) -> Rulesfile:
    return Rulesfile.from_wire({"metadata": {"name": name, "generation": 1}, "spec": {"inlineRules": text}})


def container_plugin(init_config: dict[str, Any]) -> Plugin:
    return Plugin.from_wire({"metadata": {"name": "my-container", "generation": 1}, "spec": {"config": {
        "name": "container", "libraryPath": "libcontainer.so", "initConfig": init_config}}})  # fmt: skip


@pytest.fixture(scope="module")
def image_defaults(tmp_path_factory: pytest.TempPathFactory) -> ImageDefaults:
    directory = tmp_path_factory.mktemp("image-defaults")
    shutil.copy(DEFAULT_RULES, directory / "falco_rules.yaml")
    return ImageDefaults.read(directory)


def planned(
    artifacts: list[Any],
    image_defaults: ImageDefaults | None,
    resolutions: Any = None,
    needs: dict[str, ArtifactNeeds] | None = None,
    last_good: dict[ArtifactKey, Delivered] | None = None,
) -> Plan:
    return plan(artifacts, resolutions or {}, last_good or {}, plugins_dir=PLUGINS, rules_set_check=rules_set_check,
                artifact_needs=needs, image_defaults=image_defaults)  # fmt: skip


def states(result: Plan) -> dict[str, tuple[str, str]]:
    return {outcome.key.name: (outcome.state, outcome.message or "") for outcome in result.outcomes}


def plugins_fragment(result: Plan) -> dict[str, Any] | None:
    fragment = result.directories[CONFIG_DIR].get(PLUGINS_CONFIG_FILE)
    return None if fragment is None else plain(load_yaml(fragment))


def test_the_image_rules_file_is_read_under_the_path_falco_loads_it_from(image_defaults: ImageDefaults) -> None:
    assert image_defaults.rules is not None
    assert image_defaults.rules.name == IMAGE_RULES_PATH
    assert any(isinstance(item, dict) and item.get("macro") == "spawned_process" for item in image_defaults.rules.items)


def test_a_missing_image_rules_file_leaves_only_the_container_plugin(tmp_path: Path) -> None:
    assert ImageDefaults.read(tmp_path) == ImageDefaults(rules=None)
    result = planned([rulesfile("uses", USES_DEFAULTS)], ImageDefaults.read(tmp_path))
    state, message = states(result)["uses"]
    assert state == "Invalid"
    assert "spawned_process" in message


def test_rules_using_the_default_macros_and_container_fields_are_accepted_with_the_image_defaults(
    image_defaults: ImageDefaults,
) -> None:
    result = planned([rulesfile("uses", USES_DEFAULTS), rulesfile("appends", APPENDS_TO_DEFAULTS)], image_defaults)
    assert states(result) == {"appends": ("Installed", "wrote 50-03-appends-inline.yaml"),
                              "uses": ("Installed", "wrote 50-03-uses-inline.yaml")}  # fmt: skip
    written = result.directories["rules"]
    assert sorted(written) == ["50-03-appends-inline.yaml", "50-03-uses-inline.yaml"], "the image's file is not written"


def test_the_same_rules_are_refused_without_the_image_defaults() -> None:
    result = planned([rulesfile("uses", USES_DEFAULTS), rulesfile("appends", APPENDS_TO_DEFAULTS)], None)
    found = states(result)
    assert found["uses"][0] == "Invalid"
    assert "container.id" in found["uses"][1]
    assert found["appends"][0] == "Invalid"
    assert "shell_binaries" in found["appends"][1]
    assert result.directories["rules"] == {}


def test_a_rule_using_spawned_process_is_accepted_with_the_flag_and_refused_without(
    image_defaults: ImageDefaults,
) -> None:
    assert states(planned([rulesfile("r", USES_SPAWNED_PROCESS)], image_defaults))["r"][0] == "Installed"
    state, message = states(planned([rulesfile("r", USES_SPAWNED_PROCESS)], None))["r"]
    assert state == "Invalid"
    assert "spawned_process" in message


def test_a_requirement_on_the_image_container_plugin_of_unknown_version_is_accepted(
    image_defaults: ImageDefaults,
) -> None:
    assert states(planned([rulesfile("needs", NEEDS_CONTAINER)], image_defaults))["needs"][0] == "Installed"
    without = states(planned([rulesfile("needs", NEEDS_CONTAINER)], None))["needs"]
    assert without[0] == "Failed"
    assert "container" in without[1]


def test_with_zero_artifacts_the_plugins_fragment_configures_the_image_container_plugin(
    image_defaults: ImageDefaults,
) -> None:
    assert plugins_fragment(planned([], image_defaults)) == {"plugins": [dict(CONTAINER_ENTRY)],
                                                             "load_plugins": ["container"]}  # fmt: skip
    assert plugins_fragment(planned([], ImageDefaults())) is not None
    assert plugins_fragment(planned([], None)) is None, "without the flag: no fragment, as before"


def test_a_plugin_named_container_replaces_the_image_entry(image_defaults: ImageDefaults) -> None:
    result = planned([container_plugin({"label_max_len": 20})], image_defaults)
    fragment = plugins_fragment(result)
    assert fragment is not None
    assert fragment["load_plugins"] == ["container"]
    assert fragment["plugins"] == [{"name": "container", "library_path": "libcontainer.so",
                                    "init_config": {"label_max_len": 20}}]  # fmt: skip
    assert fragment == plugins_fragment(planned([container_plugin({"label_max_len": 20})], None)), (
        "the user's entry, byte for byte as without the image defaults"
    )


@pytest.mark.anyio
async def test_the_agent_planner_judges_with_the_image_defaults_and_tells_them_apart_in_its_memo(
    image_defaults: ImageDefaults,
) -> None:
    with_defaults = PassPlanner(PLUGINS, rules_set_check, image_defaults=image_defaults)
    without = PassPlanner(PLUGINS, rules_set_check, checks=with_defaults.checks)  # one memo for both
    artifacts = [rulesfile("uses", USES_DEFAULTS)]
    accepted = await with_defaults.plan(artifacts, {}, {})
    refused = await without.plan(artifacts, {}, {})
    assert [o.state for o in accepted.outcomes] == ["Installed"]
    assert [o.state for o in refused.outcomes] == ["Invalid"]


def test_the_flag_is_parsed_and_documented() -> None:
    parser = build_parser()
    assert parser.parse_args(["--image-defaults-dir", "/etc/falco/image-defaults"]).image_defaults_dir == Path(
        "/etc/falco/image-defaults"
    )
    assert parser.parse_args([]).image_defaults_dir is None
    assert "--image-defaults-dir" in parser.format_help()


ONLY_IN_IMAGE = "- macro: only_in_image\n  condition: evt.num > 0\n"
USES_ONLY_IN_IMAGE = (
    "- rule: uses the image's macro\n  desc: d\n  condition: only_in_image and spawned_process\n  output: o\n"
    "  priority: NOTICE\n"
)
DEFAULT_RULES_OCI = {"reference": "ghcr.io/falcosecurity/rules/falco-rules:4"}


def default_rules_from_oci(config_name: str) -> tuple[Rulesfile, Any, dict[str, ArtifactNeeds]]:
    artifact = Rulesfile.from_wire({"metadata": {"name": "falco-rules", "generation": 1},
                                         "spec": {"priority": 0, "ociArtifact": DEFAULT_RULES_OCI}})  # fmt: skip
    content = Content(DEFAULT_RULES.read_bytes(), "sha256:falco-rules")
    config = {"name": config_name, "version": "4.0.0", "dependencies": [{"name": "container", "version": "0.4.0"}]}
    return (
        artifact,
        {(ArtifactKey("Rulesfile", "falco-rules"), Medium.OCI): content},
        {"sha256:falco-rules": artifact_needs(config)},
    )


@pytest.fixture
def image_with_marker(tmp_path: Path) -> ImageDefaults:
    """An image whose default rules also define a macro the OCI copy lacks: which copy the check read shows."""
    (tmp_path / "falco_rules.yaml").write_bytes(DEFAULT_RULES.read_bytes() + b"\n" + ONLY_IN_IMAGE.encode())
    return ImageDefaults.read(tmp_path)


def test_default_rules_from_oci_replace_the_image_copy(image_with_marker: ImageDefaults) -> None:
    artifact, resolutions, needs = default_rules_from_oci("falco-rules")
    artifacts = [artifact, rulesfile("uses", USES_SPAWNED_PROCESS), rulesfile("marker", USES_ONLY_IN_IMAGE)]
    result = planned(artifacts, image_with_marker, resolutions, needs)
    found = states(result)
    assert found["falco-rules"][0] == "Installed"
    assert found["uses"][0] == "Installed", "spawned_process comes from the OCI copy now"
    assert found["marker"][0] == "Invalid", "the image's file is left out of the check"
    assert "only_in_image" in found["marker"][1]
    fragment = result.directories[CONFIG_DIR][DEFAULT_RULES_CONFIG_FILE]
    assert plain(load_yaml(fragment)) == {"rules_files": ["/etc/falco/rules.d"]}
    # The artifact goes: the image's file loads again, and the fragment leaves.
    after = planned(artifacts[1:], image_with_marker, last_good=dict(result.remembered))
    assert DEFAULT_RULES_CONFIG_FILE not in after.directories[CONFIG_DIR]
    assert {name: state for name, (state, _) in states(after).items()} == {"marker": "Installed", "uses": "Installed"}


def test_other_oci_rules_and_agents_without_the_flag_keep_the_image_file(image_with_marker: ImageDefaults) -> None:
    artifact, resolutions, needs = default_rules_from_oci("my-rules")
    other = planned([artifact, rulesfile("marker", USES_ONLY_IN_IMAGE)], image_with_marker, resolutions, needs)
    assert DEFAULT_RULES_CONFIG_FILE not in other.directories[CONFIG_DIR]
    artifact, resolutions, needs = default_rules_from_oci("falco-rules")
    without_flag = planned([artifact], None, resolutions, needs)
    assert DEFAULT_RULES_CONFIG_FILE not in without_flag.directories[CONFIG_DIR]


def test_a_config_may_not_take_the_name_of_the_default_rules_fragment(image_defaults: ImageDefaults) -> None:
    config = Config.from_wire({"metadata": {"name": "image-rules-replaced", "generation": 1},
                                    "spec": {"priority": 99, "config": {"watch_config_files": True}}})  # fmt: skip
    state, message = states(planned([config], image_defaults))["image-rules-replaced"]
    assert state == "Invalid"
    assert DEFAULT_RULES_CONFIG_FILE in message


def reported(result: Plan) -> Any:
    """What the agent's report says of the image's defaults after this plan (None: nothing)."""
    directories = {directory: Path("/pod", directory) for directory in DIRECTORIES}
    return report_status(result.outcomes, directories, image_defaults=result.image_defaults).get("imageDefaults")


def test_the_report_says_the_image_rules_file_with_its_sha256_and_the_container_plugin(
    image_defaults: ImageDefaults,
) -> None:
    assert reported(planned([], image_defaults)) == {"rules": [IMAGE_RULES_PATH], "plugins": ["container"],
                                                     "rulesSha256": sha256_hex(DEFAULT_RULES.read_bytes())}  # fmt: skip


def test_an_agent_without_the_flag_reports_nothing_of_the_image() -> None:
    assert reported(planned([], None)) is None


def test_the_report_names_the_plugin_that_replaces_the_image_container_plugin(image_defaults: ImageDefaults) -> None:
    image = reported(planned([container_plugin({})], image_defaults))
    assert "plugins" not in image
    assert image["replacedBy"] == ["Plugin/my-container"]
    assert image["rules"] == [IMAGE_RULES_PATH]


def test_the_report_names_the_rulesfile_that_replaces_the_image_rules_and_they_come_back_when_it_goes(
    image_with_marker: ImageDefaults,
) -> None:
    artifact, resolutions, needs = default_rules_from_oci("falco-rules")
    with_oci = planned([artifact], image_with_marker, resolutions, needs)
    assert reported(with_oci) == {"plugins": ["container"], "replacedBy": ["Rulesfile/falco-rules"]}
    after = planned([], image_with_marker, last_good=dict(with_oci.remembered))
    assert reported(after) == {"rules": [IMAGE_RULES_PATH], "plugins": ["container"],
                               "rulesSha256": image_with_marker.rules_sha256}  # fmt: skip
    assert image_with_marker.rules_sha256 != sha256_hex(DEFAULT_RULES.read_bytes())


def test_a_missing_image_rules_file_is_reported_without_a_sha256(tmp_path: Path) -> None:
    assert reported(planned([], ImageDefaults.read(tmp_path))) == {"rules": [IMAGE_RULES_PATH],
                                                                   "plugins": ["container"]}  # fmt: skip
