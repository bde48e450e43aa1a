"""Which generation a node delivers during a staged rollout, and the snapshot's name."""

from __future__ import annotations

import re
from typing import Any

import pytest

from falco_operator.rollout.effective import delivers_live, snapshot_name

Json = dict[str, Any]
ROLLOUT = {"steps": [{"nodes": 1}, {"percent": 100}]}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def artifact(generation: int, rollout: Json | None, spec_rollout: Json | None = ROLLOUT) -> Json:
    spec: Json = {"inlineRules": "- list: x\n  items: []\n"}
    if spec_rollout is not None:
        spec["rollout"] = spec_rollout
    status = {"rollout": rollout} if rollout is not None else {}
    return {"kind": "Rulesfile", "metadata": {"name": "r", "generation": generation}, "spec": spec, "status": status}


def test_without_a_rollout_or_its_status_every_node_delivers_the_live_spec() -> None:
    assert delivers_live(artifact(3, None), "node1")
    assert delivers_live(artifact(3, {"phase": "Halted", "stableGeneration": 2}, spec_rollout=None), "node1")


def test_succeeded_delivers_the_live_spec_only_at_the_stable_generation() -> None:
    stable = {"phase": "Succeeded", "stableGeneration": 3, "snapshot": "r-rulesfile-stable"}
    assert delivers_live(artifact(3, stable), "node1")
    assert not delivers_live(artifact(4, stable), "node1"), "an edit the operator has not taken up yet"


@pytest.mark.parametrize("phase", ["Progressing", "Paused"])
def test_a_running_rollout_delivers_the_candidate_on_its_nodes_only(phase: str) -> None:
    rollout = {"phase": phase, "stableGeneration": 3, "candidateGeneration": 4, "nodes": ["node2"]}
    assert delivers_live(artifact(4, rollout), "node2")
    assert not delivers_live(artifact(4, rollout), "node1")
    assert not delivers_live(artifact(5, rollout), "node2"), "a newer edit waits for the operator"


@pytest.mark.parametrize("phase", ["Halted", "Aborted"])
def test_after_a_halt_or_an_abort_every_node_delivers_the_stable_generation(phase: str) -> None:
    rollout = {"phase": phase, "stableGeneration": 3, "candidateGeneration": 4}
    assert not delivers_live(artifact(4, rollout), "node2")


def test_snapshot_names() -> None:
    assert snapshot_name("Rulesfile", "my-rules") == "my-rules-rulesfile-stable"
    assert snapshot_name("Config", "c") == "c-config-stable"
    long_a, long_b = "a" * 240 + ".x", "a" * 240 + ".y"
    names = {snapshot_name("Plugin", long_a), snapshot_name("Plugin", long_b)}
    assert len(names) == 2
    for name in names | {snapshot_name("Rulesfile", "b" * 236 + "-" + "c" * 16)}:
        assert len(name) <= 253
        assert DNS_SUBDOMAIN.match(name), name
    assert snapshot_name("Plugin", long_a) == snapshot_name("Plugin", long_a)
