"""Falco confirmation (pure): Loaded only when Falco reports the hash of what was written."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from artifact_agent.confirmation import (
    FAST_POLLS,
    FIRST_POLLS,
    FIRST_POLLS_FOR,
    FalcoLoads,
    FalcoView,
    confirm,
    loads_expected,
    missed_swap,
    parse_reload_time,
    parse_rules_hashes,
    parse_versions,
    poll_interval,
)
from artifact_agent.layout import GenerationDirectory
from artifact_agent.recovery import recover_last_good
from falco_operator.api.plain import Config, Plugin, Rulesfile
from falco_operator.artifacts import Artifact, ArtifactKey, Content, Medium, Outcome, plan, sha256_hex

RULE = b"- list: shells\n  items: [bash]\n"
# As Falco 0.44.1 prints it: HELP and TYPE repeated before every sample.
METRICS = f"""# HELP falcosecurity_falco_sha256_rules_files_info https://falco.org/docs/metrics/
# TYPE falcosecurity_falco_sha256_rules_files_info gauge
falcosecurity_falco_sha256_rules_files_info{{file_name="50-03-a-inline.yaml",sha256="{sha256_hex(RULE)}"}} 1
# HELP falcosecurity_falco_sha256_rules_files_info https://falco.org/docs/metrics/
# TYPE falcosecurity_falco_sha256_rules_files_info gauge
falcosecurity_falco_sha256_rules_files_info{{file_name="50-03-b-inline.yaml",sha256="{"0" * 64}"}} 1
falcosecurity_falco_sha256_config_files_info{{file_name="falco.yaml",sha256="{"1" * 64}"}} 1
"""


def outcomes() -> list[Outcome]:
    artifacts: list[Artifact] = [
        Rulesfile.from_wire({"metadata": {"name": "a"}, "spec": {"inlineRules": RULE.decode()}}),
        Rulesfile.from_wire({"metadata": {"name": "b"}, "spec": {"inlineRules": RULE.decode()}}),
        Config.from_wire({"metadata": {"name": "c"}, "spec": {"config": "json_output: true\n"}}),
        Plugin.from_wire({"metadata": {"name": "container"}}),
    ]
    return list(plan(artifacts, {}, {}, plugins_dir="/p").outcomes)


def test_falcos_rules_metric_is_read_as_file_names_and_hashes() -> None:
    assert parse_rules_hashes(METRICS) == {"50-03-a-inline.yaml": sha256_hex(RULE), "50-03-b-inline.yaml": "0" * 64}


def test_only_what_falco_confirms_is_loaded_and_configs_say_they_cannot_be() -> None:
    view = FalcoView(True, "0.44.1", parse_rules_hashes(METRICS), {"container": "0.7.1"})
    states = {o.key.name: (o.state, o.reason) for o in confirm(outcomes(), view)}
    assert states == {
        "a": ("Loaded", "Loaded"),
        "b": ("Installed", "NotLoaded"),  # Falco runs other bytes under that name
        "c": ("Installed", "Installed"),
        "container": ("Installed", "NotLoaded"),  # running, but no restart seen after its entry was written
    }
    config = next(o for o in confirm(outcomes(), view) if o.key.name == "c")
    assert "Falco does not report which config fragments it loaded" in (config.message or "")
    assert not loads_expected(outcomes(), view)


# As Falco 0.44.1 answers /versions (engine 0.62.0).
VERSIONS = {"default_driver_version": "10.2.0+driver", "engine_version": "62", "engine_version_semver": "0.62.0",
            "falco_version": "0.44.1", "libs_version": "0.25.4", "plugin_api_version": "3.12.0",
            "plugin_versions": {"container": "0.7.1"}}  # fmt: skip


def test_falcos_versions_give_its_engine_version_for_the_rules_requirements() -> None:
    said = parse_versions(VERSIONS)
    assert (said.falco, said.engine, said.plugins) == ("0.44.1", "0.62.0", {"container": "0.7.1"})
    # An older Falco says only the whole number N, which Falco means as 0.N.0.
    assert parse_versions({"engine_version": "26"}).engine == "0.26.0"
    assert parse_versions({"engine_version": 31}).engine == "0.31.0"
    assert parse_versions({"engine_version_semver": "bogus", "engine_version": "0.40.0"}).engine == "0.40.0"
    unknowns: list[object] = [
        {},
        {"engine_version": "soon"},
        {"engine_version": True},
        {"engine_version": "\u00b2"},
        [],
    ]
    for unknown in unknowns:
        assert parse_versions(unknown).engine is None
    assert parse_versions({"falco_version": "0.44.1"}).plugins == {}


def test_an_unreachable_falco_confirms_nothing_and_changes_nothing() -> None:
    before = outcomes()
    assert confirm(before, FalcoView(False)) == before


def test_a_swap_falco_has_not_reloaded_for_after_three_seconds_is_missed_once() -> None:
    metrics = METRICS + "falcosecurity_falco_reload_timestamp_nanoseconds 1795539541511565333\n"
    assert parse_reload_time(metrics) == pytest.approx(1795539541.5115653, abs=1e-3)
    reloaded = 1000.0
    view = FalcoView(True, "0.44.1", reloaded_at=reloaded)
    assert not missed_swap(view, reloaded - 5, now=reloaded + 10), "Falco reloaded after the swap"
    assert not missed_swap(view, reloaded + 1, now=reloaded + 2), "too early to say"
    assert missed_swap(view, reloaded + 1, now=reloaded + 5)
    assert not missed_swap(FalcoView(False), reloaded + 1, now=reloaded + 5), "an unreachable Falco says nothing"
    assert not missed_swap(view, None, now=reloaded + 5), "no swap waiting"


def test_a_nudge_leaves_the_directory_as_it_was(tmp_path: Path) -> None:
    directory = GenerationDirectory(tmp_path / "rules.d")
    directory.swap({"a.yaml": b"a"})
    before = sorted(entry.name for entry in directory.path.iterdir())
    directory.nudge()
    assert sorted(entry.name for entry in directory.path.iterdir()) == before


DIGEST = "sha256:" + "d" * 64
LIBRARY = b"\x7fELF json"


def json_plugin(init_config: str = "") -> tuple[list[Artifact], Outcome, dict[str, dict[str, bytes]]]:
    """A Plugin delivered from OCI (digest ``DIGEST``): its artifacts, its outcome and the files written for it."""
    oci = {"reference": "registry.example/falcosecurity/plugins/plugin/json:0.7.4"}
    json = Plugin.from_wire({"metadata": {"name": "json"},
                                  "spec": {"ociArtifact": oci, "config": {"initConfig": init_config}}})  # fmt: skip
    resolutions = {(ArtifactKey("Plugin", "json"), Medium.OCI): Content(LIBRARY, DIGEST)}
    planned = plan([json], resolutions, {}, plugins_dir="/p")
    return [json], planned.outcomes[0], {kind: dict(files) for kind, files in planned.directories.items()}


def running(version: str, reloaded_at: float) -> FalcoView:
    return FalcoView(True, "0.44.1", plugins={"json": version}, reloaded_at=reloaded_at)


def test_a_plugin_of_unknown_version_is_loaded_only_after_a_restart_that_followed_its_swap() -> None:
    """The OCI config was absent, too large or not read: Falco listing the name proves nothing before it restarted
    after the swap that wrote the library; after that restart the name is the evidence, and the message says the
    version was not checked."""
    _, outcome, _ = json_plugin()
    unknown: dict[str, str] = {}  # no version read for DIGEST
    alone = confirm([outcome], running("0.7.4", 50.0), versions=unknown)[0]
    assert (alone.state, alone.reason) == ("Installed", "NotLoaded"), "no restart seen at all"
    loads = FalcoLoads()
    loads.started_with({}, at=90.0)  # a new pod: nothing on disk
    loads.swapped(100.0, {outcome.key: outcome.delivered})
    before = running("0.7.4", 50.0)  # Falco's last restart was before the swap: it runs whatever it had
    loads.observed(before, now=101.0)
    waiting = confirm([outcome], before, loads, unknown, now=101.0)[0]
    assert (waiting.state, waiting.reason) == ("Installed", "NotLoaded")
    assert "has not restarted since this version was written (yet)" in (waiting.message or "")
    after = running("0.7.4", 100.5)
    loads.observed(after, now=101.0)
    loaded = confirm([outcome], after, loads, unknown, now=101.0)[0]
    assert (loaded.state, loaded.reason) == ("Loaded", "Loaded")
    assert loaded.message == ("Falco runs plugin json 0.7.4; the version could not be checked (the OCI artifact "
                              "has no readable config that gives it)")  # fmt: skip
    known = confirm([outcome], after, loads, {DIGEST: "0.7.4"}, now=101.0)[0]
    assert (known.state, known.message) == ("Loaded", "Falco runs plugin json 0.7.4")
    assert confirm([outcome], running("0.7.3", 100.5), loads, unknown, now=101.0)[0].state == "Loaded", (
        "without a version only the name is compared (the message says so)"
    )
    gone = confirm([outcome], FalcoView(True, "0.44.1", reloaded_at=100.5), loads, unknown, now=101.0)[0]
    assert gone.state == "Installed"
    assert (gone.message or "").endswith("; Falco does not run plugin json")


def test_a_tag_pushed_again_with_the_same_library_keeps_the_plugin_loaded() -> None:
    """A new manifest (a new OCI digest) around the same library bytes and the same version: what Falco loaded is
    what is on disk, so the Plugin stays Loaded without waiting for a restart that nothing calls for."""
    _, outcome, _ = json_plugin()
    loads = FalcoLoads()
    loads.started_with({}, at=90.0)
    loads.swapped(100.0, {outcome.key: outcome.delivered})
    after = running("0.7.4", 100.5)
    loads.observed(after, now=101.0)
    assert confirm([outcome], after, loads, {DIGEST: "0.7.4"}, now=101.0)[0].state == "Loaded"
    repushed_digest = "sha256:" + "e" * 64
    repushed = dataclasses.replace(outcome, delivered=dataclasses.replace(outcome.delivered, digest=repushed_digest))
    still = confirm([repushed], after, loads, {repushed_digest: "0.7.4"}, now=102.0)[0]
    assert (still.state, still.reason) == ("Loaded", "Loaded"), still.message
    other_bytes = {ref: data + b"!" for ref, data in outcome.delivered.files.items()}
    rebuilt = dataclasses.replace(outcome, delivered=dataclasses.replace(repushed.delivered, files=other_bytes))
    waiting = confirm([rebuilt], after, loads, {repushed_digest: "0.7.4"}, now=102.0)[0]
    assert (waiting.state, waiting.reason) == ("Installed", "NotLoaded"), "other bytes wait for Falco's restart"


def test_after_an_agent_restart_a_plugin_is_loaded_only_on_falcos_own_evidence() -> None:
    """The agent starts over files an earlier run wrote and has seen no restart of Falco after them: Falco running
    the delivered version (known) of the entry found on disk is evidence; the name alone is not, until Falco's next
    restart."""
    artifacts, outcome, written = json_plugin()
    loads = FalcoLoads()
    loads.started_with(recover_last_good(written, artifacts, "/p"), at=1000.0)
    earlier = running("0.7.4", 500.0)  # Falco restarted before the agent did
    loads.observed(earlier, now=1001.0)
    unknown = confirm([outcome], earlier, loads, {}, now=1001.0)[0]
    assert (unknown.state, unknown.reason) == ("Installed", "NotLoaded")
    assert (unknown.message or "").endswith(
        "; Falco runs plugin json 0.7.4, but the agent has not seen Falco restart since these files were written and "
        "the version could not be checked (the OCI artifact has no readable config that gives it): it confirms them "
        "at Falco's next restart"
    )
    known = confirm([outcome], earlier, loads, {DIGEST: "0.7.4"}, now=1001.0)[0]
    assert (known.state, known.message) == ("Loaded", "Falco runs plugin json 0.7.4")
    other = confirm([outcome], running("0.7.3", 500.0), loads, {DIGEST: "0.7.4"}, now=1001.0)[0]
    assert (other.state, other.reason) == ("Installed", "NotLoaded")

    # The agent's own swap changes the entry (same library, same version): Falco has not restarted for it.
    _, changed, _ = json_plugin("{}")
    swapping = FalcoLoads()
    swapping.started_with(recover_last_good(written, artifacts, "/p"), at=1000.0)
    swapping.swapped(1002.0, {changed.key: changed.delivered})
    stale = confirm([changed], earlier, swapping, {DIGEST: "0.7.4"}, now=1003.0)[0]
    assert (stale.state, stale.reason) == ("Installed", "NotLoaded")
    assert "has not restarted since this version was written (yet)" in (stale.message or "")

    # Falco restarts after the agent started, nothing pending: it loaded the files the agent found.
    restarted = running("0.7.4", 1000.5)
    loads.observed(restarted, now=1001.0)
    confirmed = confirm([outcome], restarted, loads, {}, now=1001.0)[0]
    assert (confirmed.state, confirmed.reason) == ("Loaded", "Loaded")
    assert "the version could not be checked" in (confirmed.message or "")


def test_falco_is_asked_most_often_right_after_a_swap_then_every_half_second_then_rarely() -> None:
    assert poll_interval(0.0, awaited=True, idle=30.0) == FIRST_POLLS
    assert poll_interval(FIRST_POLLS_FOR - 0.01, awaited=True, idle=30.0) == FIRST_POLLS
    assert poll_interval(FIRST_POLLS_FOR, awaited=True, idle=30.0) == FAST_POLLS
    assert poll_interval(None, awaited=True, idle=30.0) == FAST_POLLS, "no swap seen by this run"
    assert poll_interval(0.0, awaited=False, idle=30.0) == 30.0, "Falco confirmed: nothing awaited"
