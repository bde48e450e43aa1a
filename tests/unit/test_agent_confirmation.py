"""Falco confirmation (pure): Loaded only when Falco reports the hash of what was written."""

from __future__ import annotations

from pathlib import Path

import pytest

from artifact_agent.confirmation import (
    FalcoView,
    confirm,
    loads_expected,
    missed_swap,
    parse_reload_time,
    parse_rules_hashes,
    parse_versions,
)
from artifact_agent.layout import GenerationDirectory
from falco_operator.api import Config, Plugin, Rulesfile
from falco_operator.artifacts import Artifact, Outcome, plan, sha256_hex

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
        Rulesfile.model_validate({"metadata": {"name": "a"}, "spec": {"inlineRules": RULE.decode()}}),
        Rulesfile.model_validate({"metadata": {"name": "b"}, "spec": {"inlineRules": RULE.decode()}}),
        Config.model_validate({"metadata": {"name": "c"}, "spec": {"config": "json_output: true\n"}}),
        Plugin.model_validate({"metadata": {"name": "container"}}),
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
        "container": ("Loaded", "Loaded"),
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
