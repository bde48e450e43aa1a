"""Plugin libraries (pure): a delivered library is named after its content in the agent's own directory (not the
image's /usr/share/falco/plugins), its entry points at that name, a libraryPath the user gives is honoured, and two
Plugins never share one file name with different bytes."""

from __future__ import annotations

import hashlib
import posixpath
from typing import Any

from falco_operator.api.plain import Plugin, Rulesfile
from falco_operator.artifacts import (
    CONFIG_DIR,
    EMPTY,
    PLUGINS_CONFIG_FILE,
    PLUGINS_DIR,
    ArtifactKey,
    Content,
    Medium,
    Plan,
    load_yaml,
    parse_plugin_library_file_name,
    plan,
    plugin_library_file_name,
)
from falco_operator.artifacts.plugins import ARTIFACT_PLUGINS_DIR, FALCO_PLUGINS_DIR
from falco_operator.artifacts.rules import rules_set_check
from falco_operator.artifacts.yamldoc import plain

PLUGINS = ARTIFACT_PLUGINS_DIR
OLD, NEW = b"\x7fELF json 0.7.4", b"\x7fELF json 0.7.5"
OCI = {"reference": "ghcr.io/falcosecurity/plugins/plugin/json:0.7.4"}


def plugin(name: str, generation: int = 1, **spec: Any) -> Plugin:
    return Plugin.from_wire({"metadata": {"name": name, "generation": generation}, "spec": spec})


def delivered(name: str, library: bytes, **spec: Any) -> Plan:
    resolutions = {(ArtifactKey("Plugin", name), Medium.OCI): Content(library)}
    return plan([plugin(name, ociArtifact=OCI, **spec)], resolutions, {}, plugins_dir=PLUGINS)


def library_paths(result: Plan) -> dict[str, str]:
    document = plain(load_yaml(result.directories[CONFIG_DIR][PLUGINS_CONFIG_FILE]))
    return {entry["name"]: entry["library_path"] for entry in document["plugins"]}


def test_a_library_file_name_holds_the_plugin_name_and_the_start_of_its_sha256() -> None:
    name = plugin_library_file_name("json", OLD)
    assert name == f"json-{hashlib.sha256(OLD).hexdigest()[:12]}.so"
    assert plugin_library_file_name("json", NEW) != name
    parsed = parse_plugin_library_file_name(name)
    assert parsed is not None
    assert parsed.name == "json"
    assert parsed.names(OLD)
    assert not parsed.names(NEW)
    # An object name with dashes and a digest-like part: only the last part is the digest.
    tricky = plugin_library_file_name("json-0123456789ab", NEW)
    assert getattr(parse_plugin_library_file_name(tricky), "name", None) == "json-0123456789ab"
    for other in ("json.so", "json-0123.so", "json-0123456789AB.so", "50-03-json-inline.yaml", "-0123456789ab.so"):
        assert parse_plugin_library_file_name(other) is None, other


def test_a_new_library_gets_a_new_name_and_its_entry_points_at_it() -> None:
    first, second = delivered("json", OLD), delivered("json", NEW)
    assert first.directories[PLUGINS_DIR] == {plugin_library_file_name("json", OLD): OLD}
    assert second.directories[PLUGINS_DIR] == {plugin_library_file_name("json", NEW): NEW}
    assert library_paths(first) == {"json": f"{PLUGINS}/{plugin_library_file_name('json', OLD)}"}
    assert library_paths(second) == {"json": f"{PLUGINS}/{plugin_library_file_name('json', NEW)}"}
    # The same bytes give the same name on every node and every pass.
    assert delivered("json", OLD).directories == first.directories


def test_the_agents_plugins_directory_is_not_the_images() -> None:
    # The pod mounts an emptyDir at the agent's directory: at /usr/share/falco/plugins it would hide the image's
    # plugins (the official image ships libcontainer.so there).
    assert posixpath.normpath(ARTIFACT_PLUGINS_DIR) != posixpath.normpath(FALCO_PLUGINS_DIR)
    assert not posixpath.normpath(ARTIFACT_PLUGINS_DIR).startswith(posixpath.normpath(FALCO_PLUGINS_DIR) + "/")


def test_a_plugin_without_a_library_to_deliver_points_at_the_images_library() -> None:
    result = plan([plugin("container")], {}, {}, plugins_dir=PLUGINS)
    assert result.directories[PLUGINS_DIR] == {}
    assert library_paths(result) == {"container": f"{FALCO_PLUGINS_DIR}/container.so"}


def test_a_relative_library_path_without_an_oci_artifact_names_the_images_library_and_its_rules_load() -> None:
    # libcontainer.so is Falco's to find in /usr/share/falco/plugins: the entry keeps it relative, nothing is
    # written, and rules that use container fields load with it (the set invariant knows no library files).
    container = plugin("container", config={"libraryPath": "libcontainer.so", "initConfig": {"label_max_len": 100}})
    uses = Rulesfile.from_wire({"metadata": {"name": "uses", "generation": 1}, "spec": {"inlineRules":
        "- rule: c\n  desc: d\n  condition: container.id != host\n  output: o\n  priority: INFO\n"}})  # fmt: skip
    result = plan([container, uses], {}, {}, plugins_dir=PLUGINS, rules_set_check=rules_set_check)
    assert {o.key.name: (o.state, o.reason) for o in result.outcomes} == {
        "container": ("Installed", "Installed"), "uses": ("Installed", "Installed")}  # fmt: skip
    assert result.directories[PLUGINS_DIR] == {}
    assert library_paths(result) == {"container": "libcontainer.so"}


def test_a_library_path_the_user_gives_is_honoured() -> None:
    # A file of the agent's directory, or a bare file name: the delivered library gets that name there, and the
    # entry its absolute path (a relative one would be Falco's, in the image's directory).
    # A path in the image's directory is where delivered libraries went before they had a directory of their own
    # (the documented form then): it names the delivered library too, so such Plugins survive the upgrade.
    for given in (f"{PLUGINS}/json.so", f"{PLUGINS}/sub/../json.so", "json.so", f"{FALCO_PLUGINS_DIR}/json.so"):
        result = delivered("json", NEW, config={"libraryPath": given})
        assert result.directories[PLUGINS_DIR] == {"json.so": NEW}, given
        assert library_paths(result) == {"json": f"{PLUGINS}/json.so"}, given
    # Elsewhere, relative with a directory, or a name the layout keeps for itself: the path stays as given, the
    # library is named by content.
    for given in ("/opt/plugins/libjson.so", "sub/json.so", f"{PLUGINS}/..data",
                  f"{PLUGINS}/sub/json.so", ".json.so"):  # fmt: skip
        result = delivered("json", NEW, config={"libraryPath": given})
        assert result.directories[PLUGINS_DIR] == {plugin_library_file_name("json", NEW): NEW}, given
        assert library_paths(result) == {"json": given}, given


def test_two_plugins_whose_library_paths_name_one_file_with_other_bytes_conflict() -> None:
    key_a, key_b = ArtifactKey("Plugin", "a"), ArtifactKey("Plugin", "b")
    shared = {"libraryPath": f"{PLUGINS}/lib.so"}
    artifacts = [plugin("a", ociArtifact=OCI, config=shared | {"name": "a"}),
                 plugin("b", ociArtifact=OCI, config=shared | {"name": "b"})]  # fmt: skip
    result = plan(artifacts, {(key_a, Medium.OCI): Content(OLD), (key_b, Medium.OCI): Content(NEW)}, {},
                  plugins_dir=PLUGINS)  # fmt: skip
    outcomes = {outcome.key.name: outcome for outcome in result.outcomes}
    assert (outcomes["a"].state, outcomes["b"].state) == ("Installed", "Invalid")
    assert outcomes["b"].reason == "NameConflict"
    assert outcomes["b"].message == ("library file lib.so is already delivered by Plugin a, with other content; give "
                                     "this one another libraryPath")  # fmt: skip
    assert outcomes["b"].delivered == EMPTY
    assert result.directories[PLUGINS_DIR] == {"lib.so": OLD}
    assert library_paths(result) == {"a": f"{PLUGINS}/lib.so"}
    # The same bytes in one file are no conflict.
    same = plan(artifacts, {(key_a, Medium.OCI): Content(OLD), (key_b, Medium.OCI): Content(OLD)}, {},
                plugins_dir=PLUGINS)  # fmt: skip
    assert [outcome.state for outcome in same.outcomes] == ["Installed", "Installed"]
