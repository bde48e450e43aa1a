"""What Falco refused and which plugin version it runs (pure): a refused reload is Refused, never programmed; a
Plugin is Loaded only when Falco restarted after its swap and runs the version delivered."""

from __future__ import annotations

import dataclasses
from typing import Any

from artifact_agent.confirmation import (
    MAX_REFUSAL_WAIT,
    MISSED_AFTER,
    REFUSED_AFTER,
    RELOADS_KEPT,
    FalcoLoads,
    FalcoView,
    confirm,
)
from artifact_agent.recovery import recover_last_good
from falco_operator.api.plain import Config, Plugin, Rulesfile
from falco_operator.artifacts import (
    PLUGINS_DIR,
    Artifact,
    ArtifactKey,
    Content,
    Delivered,
    Medium,
    Outcome,
    plan,
    sha256_hex,
)
from falco_operator.artifacts.oci.media import PLUGIN, PLUGIN_CONFIG, RULES
from falco_operator.artifacts.oci.registry import Descriptor, _config
from falco_operator.status import Agent, Target, artifact_status

OLD = b"- list: shells\n  items: [bash]\n"
NEW = b"- list: shells\n  items: [bash, zsh]\n"
DIGEST = "sha256:" + "a" * 64


def artifacts(rules: bytes = NEW, config: str = "json_output: true\n") -> list[Artifact]:
    return [
        Rulesfile.from_wire({"metadata": {"name": "a"}, "spec": {"inlineRules": rules.decode()}}),
        Config.from_wire({"metadata": {"name": "c"}, "spec": {"config": config}}),
        Config.from_wire({"metadata": {"name": "same"}, "spec": {"config": "log_level: info\n"}}),
        Plugin.from_wire({"metadata": {"name": "json"}}),
    ]


def outcomes(rules: bytes = NEW, config: str = "json_output: true\n") -> list[Outcome]:
    return list(plan(artifacts(rules, config), {}, {}, plugins_dir="/p").outcomes)


def on_disk(planned: list[Outcome]) -> dict[ArtifactKey, Delivered]:
    return {outcome.key: outcome.delivered for outcome in planned}


def view(rules: bytes, reloaded_at: float, plugins: dict[str, str] | None = None) -> FalcoView:
    return FalcoView(True, "0.44.1", {"50-03-a-inline.yaml": sha256_hex(rules)}, plugins or {"json": "0.7.4"},
                     reloaded_at)  # fmt: skip


def states(confirmed: list[Outcome]) -> dict[str, tuple[str, str | None]]:
    return {outcome.key.name: (outcome.state, outcome.reason) for outcome in confirmed}


def test_a_swap_falco_does_not_restart_for_even_after_a_nudge_is_refused_and_names_the_files() -> None:
    loads = FalcoLoads()
    before = outcomes(OLD, "json_output: false\n")
    loads.swapped(100.0, on_disk(before))
    loads.observed(view(OLD, 101.0))  # Falco started after the first swap: it loaded it
    after = outcomes()
    loads.swapped(200.0, on_disk(after))
    stuck = view(OLD, 101.0)  # Falco's restart time stays: its dry run failed
    loads.observed(stuck)
    assert not loads.refused(stuck, 200.0 + MISSED_AFTER + 1)  # not nudged yet: it may have missed the swap
    loads.nudged(204.0)
    assert not loads.refused(stuck, 204.0 + REFUSED_AFTER - 0.5)  # a slow restart may still come
    assert loads.refused(stuck, 204.0 + REFUSED_AFTER + 0.5)
    confirmed = confirm(after, stuck, loads, now=210.0)
    assert states(confirmed) == {
        "a": ("Refused", "Refused"),  # written in the refused swap
        "c": ("Refused", "Refused"),
        "same": ("Installed", "Installed"),  # unchanged since the swap Falco loaded
        "json": ("Loaded", "Loaded"),
    }
    message = next(o.message for o in confirmed if o.key.name == "c") or ""
    assert message.startswith("Falco refused the reload that would load 50-03-c-inline.yaml and keeps running")
    assert "hot restart failure" in message
    # Falco restarts after a later swap (the set fixed): what it confirms is Loaded again, nothing Refused.
    fixed = outcomes(OLD)
    loads.swapped(300.0, on_disk(fixed))
    restarted = view(OLD, 300.5)
    loads.observed(restarted)
    assert not loads.refused(restarted, 400.0)
    assert states(confirm(fixed, restarted, loads, now=400.0))["a"] == ("Loaded", "Loaded")
    assert "Refused" not in {state for state, _ in states(confirm(fixed, restarted, loads, now=400.0)).values()}


def test_an_unreachable_falco_or_one_that_restarted_refuses_nothing() -> None:
    loads = FalcoLoads()
    loads.swapped(100.0, on_disk(outcomes()))
    loads.nudged(104.0)
    assert not loads.refused(FalcoView(reachable=False), 200.0)
    assert not loads.refused(view(NEW, 100.2), 200.0)
    assert not FalcoLoads().refused(view(NEW, 1.0), 200.0)  # no swap seen


def test_after_an_agent_restart_a_refused_swap_refuses_only_what_it_changed() -> None:
    # The agent starts over files an earlier run wrote (and Falco loaded); it has seen no swap of its own.
    written = plan(artifacts(OLD, "json_output: false\n"), {}, {}, plugins_dir="/p").directories
    loads = FalcoLoads()
    loads.started_with(recover_last_good(written, artifacts(), "/p"), at=150.0)
    after = outcomes()  # Rulesfile a and Config c change; Config same and Plugin json stay as they were
    loads.swapped(200.0, on_disk(after))
    stuck = view(OLD, 101.0)
    loads.nudged(204.0)
    assert loads.refused(stuck, 210.0)
    assert states(confirm(after, stuck, loads, now=210.0)) == {
        "a": ("Refused", "Refused"),
        "c": ("Refused", "Refused"),
        "same": ("Installed", "Installed"),  # on disk before the refused swap, as it was: not what Falco refused
        "json": ("Installed", "NotLoaded"),  # not refused either; no version to check and no restart seen since
    }


def test_the_wait_for_a_refusal_follows_how_long_falco_took_to_reload() -> None:
    loads = FalcoLoads()
    assert loads.refusal_wait == REFUSED_AFTER  # no reload seen yet
    loads.swapped(100.0, on_disk(outcomes(OLD)))
    loads.nudged(103.0)
    loads.observed(view(OLD, 103.5), now=107.0)  # a busy node: 4 s from the nudge to Falco's answer
    assert loads.refusal_wait == 12.0
    loads.swapped(200.0, on_disk(outcomes()))
    loads.nudged(203.0)
    slow = view(OLD, 103.5)  # restarting still (its dry run loads everything first)
    assert not loads.refused(slow, 203.0 + REFUSED_AFTER + 1)  # 5 s is no proof on this node
    assert states(confirm(outcomes(), slow, loads, now=209.0))["a"] == ("Installed", "NotLoaded")
    assert loads.refused(slow, 203.0 + 12.5)
    # Falco answers after all (a reload slower still): the verdict goes, and the next wait is longer.
    loads.observed(view(NEW, 216.0), now=217.0)
    assert not loads.refused(view(NEW, 216.0), 220.0)
    assert loads.refusal_wait == 42.0
    for at in range(300, 300 + 100 * RELOADS_KEPT, 100):  # quick reloads since: the slow ones are forgotten
        loads.swapped(float(at), on_disk(outcomes()))
        loads.observed(view(NEW, at + 0.5), now=at + 1.0)
    assert loads.refusal_wait == REFUSED_AFTER
    loads.swapped(2000.0, on_disk(outcomes(OLD)))
    loads.observed(view(OLD, 2100.0), now=2200.0)  # however slow Falco was, a refusal is told within a bound
    assert loads.refusal_wait == MAX_REFUSAL_WAIT


def plugin_outcome(digest: str | None = DIGEST, library: bytes | None = None) -> Outcome:
    """The planned Plugin outcome; with ``library``, that library delivered as its file (one version or another)."""
    planned = next(o for o in outcomes() if o.key.kind == "Plugin")
    files = planned.delivered.files
    if library is not None:
        files = {**files, (PLUGINS_DIR, "json.so"): library}
    return dataclasses.replace(planned, delivered=dataclasses.replace(planned.delivered, digest=digest, files=files))


def test_a_plugin_is_loaded_only_at_the_version_delivered() -> None:
    delivered = plugin_outcome()
    versions = {DIGEST: "0.7.5"}
    loads = FalcoLoads()
    loads.swapped(0.5, on_disk([delivered]))
    loads.observed(view(NEW, 1.0))  # Falco restarted after the swap
    old = confirm([delivered], view(NEW, 1.0, {"json": "0.7.4"}), loads, versions)[0]
    assert (old.state, old.reason) == ("Installed", "NotLoaded")
    assert "Falco runs plugin json 0.7.4, not the delivered 0.7.5" in (old.message or "")
    new = confirm([delivered], view(NEW, 1.0, {"json": "0.7.5"}), loads, versions)[0]
    assert (new.state, new.message) == ("Loaded", "Falco runs plugin json 0.7.5")
    unknown = confirm([plugin_outcome(None)], view(NEW, 1.0, {"json": "0.7.4"}), loads, versions)[0]
    assert unknown.state == "Loaded"  # no version delivered with it: the name is all there is to compare
    assert "the version could not be checked (the library is not delivered from an OCI artifact)" in (
        unknown.message or ""
    )


def test_a_version_falco_does_not_run_is_explained_by_where_its_library_is() -> None:
    def delivered(config: dict[str, Any]) -> Outcome:
        oci = {"reference": "ghcr.io/falcosecurity/plugins/plugin/json:0.7.5"}
        json = Plugin.from_wire({"metadata": {"name": "json"}, "spec": {"ociArtifact": oci, "config": config}})
        resolutions = {(ArtifactKey("Plugin", "json"), Medium.OCI): Content(b"\x7fELF json 0.7.5", DIGEST)}
        return plan([json], resolutions, {}, plugins_dir="/p").outcomes[0]

    versions, older = {DIGEST: "0.7.5"}, view(NEW, 1.0, {"json": "0.7.4"})
    # A library named after its content is a path Falco never loaded: it runs it after its next restart.
    own = confirm([delivered({})], older, versions=versions)[0]
    assert (own.message or "").endswith("; Falco runs plugin json 0.7.4, not the delivered 0.7.5 (yet)")
    # At the path a libraryPath keeps, a Falco that loaded that path before keeps the old library.
    kept = confirm([delivered({"libraryPath": "/p/json.so"})], older, versions=versions)[0]
    assert "not the delivered 0.7.5 (a running Falco does not load a library again from a path it loaded before" in (
        kept.message or ""
    )
    assert (kept.message or "").endswith("restart the Falco pod, or leave libraryPath unset so that each library "
                                         "gets a name of its own)")  # fmt: skip


def test_a_plugin_written_after_falcos_last_restart_is_not_loaded_and_refused_when_falco_refuses() -> None:
    loads = FalcoLoads()
    first = [plugin_outcome("sha256:" + "b" * 64, library=b"\x7fELF json 0.7.4")]
    loads.swapped(100.0, on_disk(first))
    loads.observed(view(NEW, 100.5))
    second = [plugin_outcome(library=b"\x7fELF json 0.7.5")]  # a new library: Falco still runs the old one
    loads.swapped(200.0, on_disk(second))
    stuck = view(NEW, 100.5)
    waiting = confirm(second, stuck, loads, now=201.0)[0]
    assert (waiting.state, waiting.reason) == ("Installed", "NotLoaded")
    assert "has not restarted since this version was written" in (waiting.message or "")
    loads.nudged(204.0)
    refused = confirm(second, stuck, loads, now=210.0)[0]
    assert (refused.state, refused.reason) == ("Refused", "Refused")
    assert "its entry in the plugins fragment" in (refused.message or "")


def entry(state: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "Rulesfile", "name": "rules", "generation": 2, "state": state, **extra}


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in status["conditions"]}


def test_refused_is_never_programmed_and_the_status_says_falco_refused_it() -> None:
    agents = [Agent(f"pod-{i}", f"node{i}") for i in (1, 2)]
    refusal = "Falco refused the reload that would load 50-03-rules-inline.yaml and keeps running what it loaded"
    reports = {"pod-1": {"status": {"artifacts": [entry("Refused", reason="Refused", message=refusal)]}},
               "pod-2": {"status": {"artifacts": [entry("Loaded")]}}}  # fmt: skip
    status = artifact_status(Target("Rulesfile", "rules", 2), agents, reports, None, "2026-12-06T00:00:00Z")
    assert status["nodes"] == {"targeted": 2, "installed": 1, "loaded": 1, "failed": 1, "summary": "1/2"}
    programmed = conditions(status)["Programmed"]
    assert programmed[:2] == ("False", "Refused")
    assert programmed[2] == f"1/2 agents installed it, Falco loaded it on 1; Falco refused it on node1: {refusal}"
    assert conditions(status)["Valid"][0] == "True"  # Falco refused the set; this content may not be the cause
    reports["pod-2"] = {"status": {"artifacts": [entry("Invalid", reason="InvalidContent", message="line 1")]}}
    mixed = artifact_status(Target("Rulesfile", "rules", 2), agents, reports, None, "2026-12-06T00:00:00Z")
    assert conditions(mixed)["Programmed"][:2] == ("False", "Failed")


def test_the_plugin_config_blob_is_taken_only_when_it_is_falcoctls_plugin_config() -> None:
    blob = {"mediaType": PLUGIN_CONFIG, "digest": DIGEST, "size": 80}
    assert _config({"config": blob}, PLUGIN) == Descriptor(PLUGIN_CONFIG, DIGEST, 80)
    assert _config({"config": blob}, RULES) is None  # a rules artifact's config is another type
    assert _config({"config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": DIGEST, "size": 2}},
                   PLUGIN) is None  # fmt: skip
    assert _config({"config": {"mediaType": PLUGIN_CONFIG, "digest": DIGEST}}, PLUGIN) is None
    assert _config({}, PLUGIN) is None
