"""What a node delivers of each artifact during a staged rollout: the live spec, or the stable snapshot (pure)."""

from __future__ import annotations

import base64
import json
from typing import Any

from artifact_agent.delivery import choose
from artifact_agent.sources import _key_content
from falco_operator.api.plain import SNAPSHOT_CONTENT_KEY, SNAPSHOT_KEY
from falco_operator.artifacts import (
    Artifact,
    ArtifactKey,
    Content,
    Medium,
    Resolution,
    Unavailable,
    parse_artifact,
    plan,
)

RULES_V3 = "- rule: quiet\n  desc: d\n  condition: evt.num < 0\n  output: o\n  priority: INFO\n"
RULES_V4 = RULES_V3.replace("quiet", "changed")
KEY = ArtifactKey("Rulesfile", "web")


def rulesfile(spec: dict[str, Any], generation: int, rollout: dict[str, Any] | None) -> Artifact:
    raw: dict[str, Any] = {
        "apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
        "metadata": {"name": "web", "namespace": "ns", "generation": generation},
        "spec": {**spec, "rollout": {"steps": [{"nodes": 1}], "analysis": {"duration": "10s", "maxRuleRate": 1}}},
    }  # fmt: skip
    if rollout is not None:
        raw["status"] = {"rollout": rollout}
    parsed = parse_artifact(raw)
    assert parsed is not None
    return parsed


def snapshot(spec: dict[str, Any], generation: int, content: bytes | None = None) -> dict[str, Any]:
    stable = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
              "metadata": {"name": "web", "generation": generation}, "spec": spec}  # fmt: skip
    config_map: dict[str, Any] = {
        "metadata": {"name": "web-rulesfile-stable"},
        "data": {SNAPSHOT_KEY: json.dumps(stable)},
    }
    if content is not None:
        config_map["binaryData"] = {SNAPSHOT_CONTENT_KEY: base64.b64encode(content).decode()}
    return config_map


def reader(config_maps: dict[str, dict[str, Any]]):  # type: ignore[no-untyped-def]
    def read(name: str, key: str) -> Resolution:
        if name not in config_maps:
            return Unavailable("Pending", "Resolving", f"ConfigMap {name} is being read")
        return _key_content(config_maps[name], name, key)

    return read


PROGRESSING = {"phase": "Progressing", "stableGeneration": 3, "candidateGeneration": 4, "nodes": ["canary"],
               "snapshot": "web-rulesfile-stable"}  # fmt: skip


def test_a_node_outside_the_step_delivers_the_snapshot_and_one_inside_the_candidate_under_watch() -> None:
    live = rulesfile({"inlineRules": RULES_V4}, 4, PROGRESSING)
    read = reader({"web-rulesfile-stable": snapshot({"inlineRules": RULES_V3}, 3)})

    outside = choose([live], "other", read)
    assert [a.spec.inline_rules for a in outside.artifacts] == [RULES_V3]  # type: ignore[union-attr]
    assert outside.artifacts[0].metadata.generation == 3
    assert outside.config_maps == {"web-rulesfile-stable"}
    assert not outside.candidates
    assert not outside.withheld

    inside = choose([live], "canary", read)
    assert inside.artifacts == [live]
    # The step's node watches the snapshot too: a halt sends it back to the stable generation without a new watch.
    assert inside.config_maps == {"web-rulesfile-stable"}
    assert inside.candidates[KEY].generation == 4
    assert inside.candidates[KEY].analysis.max_rule_rate == 1


def test_the_stable_configmap_bytes_come_from_the_snapshot_not_from_the_users_configmap() -> None:
    reference = {"configMapRef": {"name": "user-rules", "key": "rules.yaml"}}
    live = rulesfile(reference, 4, PROGRESSING)
    read = reader({"web-rulesfile-stable": snapshot(reference, 3, RULES_V3.encode())})
    chosen = choose([live], "other", read)
    assert chosen.config_maps == {"web-rulesfile-stable"}  # the user's ConfigMap is not read for it
    assert chosen.config_map_content == {KEY: Content(RULES_V3.encode())}
    result = plan(chosen.artifacts, {(KEY, Medium.CONFIGMAP): chosen.config_map_content[KEY]}, {}, plugins_dir="/p")
    assert [data for data in result.outcomes[0].delivered.files.values()] == [RULES_V3.encode()]


def test_an_unreadable_snapshot_keeps_the_last_good_files_pending() -> None:
    live = rulesfile({"inlineRules": RULES_V4}, 4, PROGRESSING)
    before = plan([rulesfile({"inlineRules": RULES_V3}, 3, None)], {}, {}, plugins_dir="/p")
    for config_maps in ({}, {"web-rulesfile-stable": {"data": {SNAPSHOT_KEY: "not json"}}}):
        chosen = choose([live], "other", reader(config_maps))
        assert chosen.withheld[KEY].state == "Pending"
        result = plan(chosen.artifacts, {}, before.remembered, plugins_dir="/p", withheld=chosen.withheld)
        outcome = result.outcomes[0]
        assert (outcome.state, outcome.generation) == ("Pending", 3)
        assert outcome.delivered == before.outcomes[0].delivered
        assert "last good files stay" in (outcome.message or "")


def test_a_generation_the_operator_has_not_seen_yet_is_not_delivered_anywhere() -> None:
    succeeded = {"phase": "Succeeded", "stableGeneration": 3, "snapshot": "web-rulesfile-stable"}
    live = rulesfile({"inlineRules": RULES_V4}, 4, succeeded)
    read = reader({"web-rulesfile-stable": snapshot({"inlineRules": RULES_V3}, 3)})
    for node in ("canary", "other"):
        assert choose([live], node, read).artifacts[0].metadata.generation == 3


def test_a_halted_rollout_sends_the_step_nodes_back_to_the_stable_generation() -> None:
    halted = {**PROGRESSING, "phase": "Halted", "nodes": None}
    live = rulesfile({"inlineRules": RULES_V4}, 4, halted)
    chosen = choose([live], "canary", reader({"web-rulesfile-stable": snapshot({"inlineRules": RULES_V3}, 3)}))
    assert chosen.artifacts[0].metadata.generation == 3
    assert not chosen.candidates
