"""Recovery at start (pure): files on disk are attributed to the artifacts that still exist."""

from __future__ import annotations

from typing import Any

from artifact_agent.recovery import recover_last_good
from falco_operator.api.plain import Config, Plugin, Rulesfile
from falco_operator.artifacts import (
    PLUGINS_DIR,
    Artifact,
    ArtifactKey,
    Content,
    Medium,
    Unavailable,
    plan,
    plugin_library_file_name,
)
from falco_operator.artifacts.plugins import ARTIFACT_PLUGINS_DIR, FALCO_PLUGINS_DIR

PLUGINS = ARTIFACT_PLUGINS_DIR


def test_a_restart_while_an_artifact_is_invalid_keeps_the_files_the_disk_holds_for_it() -> None:
    good: list[Artifact] = [
        Rulesfile.from_wire({"metadata": {"name": "shell"}, "spec": {"inlineRules": "- list: l\n  items: []\n"}}),
        Config.from_wire({"metadata": {"name": "out"}, "spec": {"config": "json_output: true\n", "priority": 7}}),
        Plugin.from_wire({"metadata": {"name": "container"}, "spec": {"config": {"initConfig": {"a": "1"}}}}),
    ]
    disk = {kind: dict(files) for kind, files in plan(good, {}, {}, plugins_dir=PLUGINS).directories.items()}
    disk["rules"]["50-03-gone-inline.yaml"] = b"[]"  # an artifact deleted while the agent was down

    now_invalid: list[Artifact] = [
        Rulesfile.from_wire({"metadata": {"name": "shell", "generation": 2}, "spec": {"inlineRules": "x: ["}}),
        Config.from_wire({"metadata": {"name": "out"}, "spec": {"config": "- not a mapping"}}),
        Plugin.from_wire({"metadata": {"name": "container"}, "spec": {"config": {"initConfig": {"a": "1"}}}}),
    ]
    last_good = recover_last_good(disk, now_invalid, PLUGINS)
    assert set(last_good) == {ArtifactKey("Rulesfile", "shell"), ArtifactKey("Config", "out"),
                              ArtifactKey("Plugin", "container")}  # fmt: skip
    assert dict(last_good[ArtifactKey("Config", "out")].files) == {
        ("config", "07-03-out-inline.yaml"): b"json_output: true\n"
    }
    assert last_good[ArtifactKey("Plugin", "container")].plugin_entry == {
        "name": "container", "library_path": f"{FALCO_PLUGINS_DIR}/container.so", "init_config": {"a": "1"}
    }  # fmt: skip
    after = plan(now_invalid, {}, last_good, plugins_dir=PLUGINS)
    assert {kind: dict(files) for kind, files in after.directories.items()} == {
        kind: {name: data for name, data in files.items() if name != "50-03-gone-inline.yaml"}
        for kind, files in disk.items()
    }, "the invalid artifacts keep their files; only the deleted artifact's file goes"
    assert [outcome.state for outcome in after.outcomes] == ["Invalid", "Installed", "Invalid"]


OLD, NEW = b"\x7fELF json 0.7.4", b"\x7fELF json 0.7.5"
PULLING = Unavailable("Pending", "Resolving", "the oci source is being read")


def oci_plugin(object_name: str, **config: Any) -> Plugin:
    oci = {"reference": "ghcr.io/falcosecurity/plugins/plugin/json:0.7.5"}
    return Plugin.from_wire({"metadata": {"name": object_name}, "spec": {"ociArtifact": oci, "config": config}})


def disk_of(artifacts: list[Artifact], libraries: dict[str, bytes]) -> dict[str, dict[str, bytes]]:
    resolutions = {(ArtifactKey("Plugin", a.metadata.name or ""), Medium.OCI): Content(libraries[a.metadata.name or ""])
                   for a in artifacts}  # fmt: skip
    return {
        kind: dict(files) for kind, files in plan(artifacts, resolutions, {}, plugins_dir=PLUGINS).directories.items()
    }


def test_a_restart_recognizes_libraries_named_by_content_and_leaves_out_the_orphans() -> None:
    json, gone = oci_plugin("json"), oci_plugin("gone")
    disk = disk_of([json, gone], {"json": NEW, "gone": OLD})
    # A crash between the swaps of one pass left the library json had before beside the new one.
    disk[PLUGINS_DIR][plugin_library_file_name("json", OLD)] = OLD
    disk[PLUGINS_DIR]["stray.so"] = b"?"

    last_good = recover_last_good(disk, [json], PLUGINS)
    library = plugin_library_file_name("json", NEW)
    assert dict(last_good[ArtifactKey("Plugin", "json")].files) == {(PLUGINS_DIR, library): NEW}
    entry = last_good[ArtifactKey("Plugin", "json")].plugin_entry
    assert entry == {"name": "json", "library_path": f"{PLUGINS}/{library}"}
    # Still being pulled after the restart: the library and entry on disk stay, every other library goes.
    after = plan([json], {(ArtifactKey("Plugin", "json"), Medium.OCI): PULLING}, last_good, plugins_dir=PLUGINS)
    assert after.directories[PLUGINS_DIR] == {library: NEW}
    assert after.outcomes[0].state == "Pending"


def test_a_restart_finds_a_library_by_its_name_when_the_entry_does_not_name_it() -> None:
    renamed = oci_plugin("json", name="json")
    disk = disk_of([renamed], {"json": NEW})
    disk[PLUGINS_DIR][plugin_library_file_name("other", OLD)] = OLD
    # The Plugin's plugin name changed while the agent was down: its entry is not found, its library is.
    now = oci_plugin("json", name="json2")
    last_good = recover_last_good(disk, [now], PLUGINS)
    assert dict(last_good[ArtifactKey("Plugin", "json")].files) == {
        (PLUGINS_DIR, plugin_library_file_name("json", NEW)): NEW
    }
    # A file named like json's library whose bytes are other ones is not json's.
    disk[PLUGINS_DIR] = {plugin_library_file_name("json", NEW): OLD}
    assert recover_last_good(disk, [now], PLUGINS) == {}


def test_a_restart_keeps_a_library_at_the_path_the_entry_names() -> None:
    # What an earlier agent wrote (<name>.so), and what a libraryPath in the plugins directory names.
    for library_path in (f"{PLUGINS}/json.so", "json.so"):
        disk = disk_of([oci_plugin("json", libraryPath=library_path)], {"json": OLD})
        assert disk[PLUGINS_DIR] == {"json.so": OLD}
        last_good = recover_last_good(disk, [oci_plugin("json")], PLUGINS)
        assert dict(last_good[ArtifactKey("Plugin", "json")].files) == {(PLUGINS_DIR, "json.so"): OLD}


def test_a_relative_entry_names_the_images_library_not_a_file_of_the_agents_directory() -> None:
    # x's OCI library is named libx.so in the agent's directory; container, without ociArtifact, names the image's
    # libx.so (relative: Falco's /usr/share/falco/plugins). The file on disk is x's alone.
    x = oci_plugin("x", libraryPath="libx.so")
    image = Plugin.from_wire({"metadata": {"name": "container"}, "spec": {"config": {"libraryPath": "libx.so"}}})
    resolutions = {(ArtifactKey("Plugin", "x"), Medium.OCI): Content(NEW)}
    disk = {
        kind: dict(files) for kind, files in plan([x, image], resolutions, {}, plugins_dir=PLUGINS).directories.items()
    }
    assert disk[PLUGINS_DIR] == {"libx.so": NEW}
    last_good = recover_last_good(disk, [x, image], PLUGINS)
    assert dict(last_good[ArtifactKey("Plugin", "x")].files) == {(PLUGINS_DIR, "libx.so"): NEW}
    assert dict(last_good[ArtifactKey("Plugin", "container")].files) == {}
    assert last_good[ArtifactKey("Plugin", "container")].plugin_entry == {
        "name": "container",
        "library_path": "libx.so",
    }
