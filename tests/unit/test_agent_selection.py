"""Which artifacts an agent takes: selectors, and the for-falco label of generated artifacts."""

from __future__ import annotations

from artifact_agent.selection import select
from falco_operator.status.aggregate import Agent, Target, targeted


def rulesfile(name: str, labels: dict[str, str] | None = None) -> dict[str, object]:
    return {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
            "metadata": {"name": name, "labels": labels or {}}, "spec": {"inlineRules": "[]"}}  # fmt: skip


def test_a_for_falco_label_limits_an_artifact_to_that_falcos_agents() -> None:
    objects = [rulesfile("everyone"), rulesfile("only-a", {"artifact.falcosecurity.dev/for-falco": "a"})]
    for_a, _ = select(objects, {}, {}, "a")
    for_b, _ = select(objects, {}, {}, "b")
    assert [artifact.metadata.name for artifact in for_a] == ["everyone", "only-a"]
    assert [artifact.metadata.name for artifact in for_b] == ["everyone"]


def test_the_status_counts_only_that_falcos_agents() -> None:
    agents = [Agent("a-1", "node1", falco="a"), Agent("b-1", "node1", falco="b")]
    assert [agent.pod for agent in targeted(Target("Rulesfile", "x", 1, for_falco="a"), agents)] == ["a-1"]
    assert len(targeted(Target("Rulesfile", "x", 1), agents)) == 2
