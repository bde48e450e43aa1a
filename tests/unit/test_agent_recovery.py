"""Recovery at start (pure): files on disk are attributed to the artifacts that still exist."""

from __future__ import annotations

from artifact_agent.recovery import recover_last_good
from falco_operator.api import Config, Plugin, Rulesfile
from falco_operator.artifacts import Artifact, ArtifactKey, plan

PLUGINS = "/usr/share/falco/plugins"


def test_a_restart_while_an_artifact_is_invalid_keeps_the_files_the_disk_holds_for_it() -> None:
    good: list[Artifact] = [
        Rulesfile.model_validate({"metadata": {"name": "shell"}, "spec": {"inlineRules": "- list: l\n  items: []\n"}}),
        Config.model_validate({"metadata": {"name": "out"}, "spec": {"config": "json_output: true\n", "priority": 7}}),
        Plugin.model_validate({"metadata": {"name": "container"}, "spec": {"config": {"initConfig": {"a": "1"}}}}),
    ]
    disk = {kind: dict(files) for kind, files in plan(good, {}, {}, plugins_dir=PLUGINS).directories.items()}
    disk["rules"]["50-03-gone-inline.yaml"] = b"[]"  # an artifact deleted while the agent was down

    now_invalid: list[Artifact] = [
        Rulesfile.model_validate({"metadata": {"name": "shell", "generation": 2}, "spec": {"inlineRules": "x: ["}}),
        Config.model_validate({"metadata": {"name": "out"}, "spec": {"config": "- not a mapping"}}),
        Plugin.model_validate({"metadata": {"name": "container"}, "spec": {"config": {"initConfig": {"a": "1"}}}}),
    ]
    last_good = recover_last_good(disk, now_invalid)
    assert set(last_good) == {ArtifactKey("Rulesfile", "shell"), ArtifactKey("Config", "out"),
                              ArtifactKey("Plugin", "container")}  # fmt: skip
    assert dict(last_good[ArtifactKey("Config", "out")].files) == {
        ("config", "07-03-out-inline.yaml"): b"json_output: true\n"
    }
    assert last_good[ArtifactKey("Plugin", "container")].plugin_entry == {
        "name": "container", "library_path": f"{PLUGINS}/container.so", "init_config": {"a": "1"}
    }  # fmt: skip
    after = plan(now_invalid, {}, last_good, plugins_dir=PLUGINS)
    assert {kind: dict(files) for kind, files in after.directories.items()} == {
        kind: {name: data for name, data in files.items() if name != "50-03-gone-inline.yaml"}
        for kind, files in disk.items()
    }, "the invalid artifacts keep their files; only the deleted artifact's file goes"
    assert [outcome.state for outcome in after.outcomes] == ["Invalid", "Installed", "Invalid"]
