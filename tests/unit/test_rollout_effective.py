"""Which generation a node delivers during a staged rollout (the rule the agent and the operator share)."""

from __future__ import annotations

from typing import Any

import pytest

from falco_operator.rollout.effective import MAX_NAME_LENGTH, delivers_live, snapshot_name


def artifact(generation: int, rollout: dict[str, Any] | None, spec_rollout: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"inlineRules": "[]"}
    if spec_rollout:
        spec["rollout"] = {"steps": [{"nodes": 1}]}
    raw: dict[str, Any] = {"kind": "Rulesfile", "metadata": {"name": "r", "generation": generation}, "spec": spec}
    if rollout is not None:
        raw["status"] = {"rollout": rollout}
    return raw


@pytest.mark.parametrize(
    ("generation", "rollout", "node", "live"),
    [
        (3, None, "a", True),  # no status.rollout yet: the first generation goes everywhere
        (3, {"phase": "Succeeded", "stableGeneration": 3}, "a", True),
        (4, {"phase": "Succeeded", "stableGeneration": 3}, "a", False),  # not seen by the operator yet
        (4, {"phase": "Progressing", "stableGeneration": 3, "candidateGeneration": 4, "nodes": ["a"]}, "a", True),
        (4, {"phase": "Progressing", "stableGeneration": 3, "candidateGeneration": 4, "nodes": ["a"]}, "b", False),
        (4, {"phase": "Paused", "stableGeneration": 3, "candidateGeneration": 4, "nodes": ["a"]}, "a", True),
        (5, {"phase": "Progressing", "stableGeneration": 3, "candidateGeneration": 4, "nodes": ["a"]}, "a", False),
        (4, {"phase": "Halted", "stableGeneration": 3, "candidateGeneration": 4}, "a", False),
        (4, {"phase": "Aborted", "stableGeneration": 3, "candidateGeneration": 4}, "a", False),
    ],
)
def test_a_node_delivers_the_live_spec_only_when_the_rollout_lets_it(
    generation: int, rollout: dict[str, Any] | None, node: str, live: bool
) -> None:
    assert delivers_live(artifact(generation, rollout), node) is live


def test_an_artifact_without_spec_rollout_is_delivered_live_whatever_its_status_says() -> None:
    halted = {"phase": "Halted", "stableGeneration": 3, "candidateGeneration": 4}
    assert delivers_live(artifact(5, halted, spec_rollout=False), "a")


def test_snapshot_names_are_kind_and_name_and_stay_valid_when_long() -> None:
    assert snapshot_name("Rulesfile", "web") == "web-rulesfile-stable"
    long_a, long_b = snapshot_name("Config", "a" * 250 + "x"), snapshot_name("Config", "a" * 250 + "y")
    assert len(long_a) == MAX_NAME_LENGTH
    assert long_a != long_b
    assert long_a.startswith("a" * 200)
