"""Which Falco pods an artifact is for, asked in four places (the agent, the artifact status, the operator's
agent RBAC, the Falco's artifact summary): every one must give the answer of one reading of the API."""

from __future__ import annotations

import random
from typing import Any

from artifact_agent.selection import select
from falco_operator.api import Falco
from falco_operator.artifacts import parse_artifact
from falco_operator.artifacts.audience import Audience
from falco_operator.instance.rbac import artifact_references
from falco_operator.instance.status import artifact_summary
from falco_operator.status.aggregate import Agent, Target, targeted

Json = dict[str, Any]
FOR_FALCO = "artifact.falcosecurity.dev/for-falco"
FALCOS = ("a", "b")
LABEL_CHOICES: tuple[dict[str, str], ...] = ({}, {"tier": "prod"}, {"tier": "dev"}, {"tier": "prod", "team": "x"})


def rulesfile(name: str, labels: dict[str, str] | None = None, **spec: Any) -> Json:
    return {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"configMapRef": {"name": f"cm-{name}", "key": "rules.yaml"}, **spec}}  # fmt: skip


def falco(name: str, labels: dict[str, str]) -> Falco:
    metadata = {"name": name, "namespace": "ns", "labels": labels}
    return Falco.model_validate({"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco",
                                 "metadata": metadata, "spec": {}})  # fmt: skip


def random_selector(rng: random.Random) -> Json | None:
    return rng.choice([None, {"matchLabels": {"tier": "prod"}}, {"matchLabels": {"team": "x"}},
                       {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["dev"]}]}])  # fmt: skip


def matches(selector: Json | None, labels: dict[str, str]) -> bool:
    """The oracle, written from the Kubernetes label selector rules for the shapes generated here."""
    if selector is None:
        return True
    if all(labels.get(key) == value for key, value in (selector.get("matchLabels") or {}).items()):
        return all(labels.get(e["key"]) not in e["values"] for e in selector.get("matchExpressions") or [])
    return False


def random_artifact(rng: random.Random, index: int) -> Json:
    labels = {FOR_FALCO: rng.choice(FALCOS)} if rng.random() < 0.3 else {}
    spec = {key: selector for key in ("selector", "instanceSelector") if (selector := random_selector(rng))}
    return rulesfile(f"r{index}", labels, **spec)


def for_pod(raw: Json, falco_name: str, falco_labels: dict[str, str], node_labels: dict[str, str]) -> bool:
    for_falco = raw["metadata"]["labels"].get(FOR_FALCO)
    return (
        (for_falco is None or for_falco == falco_name)
        and matches(raw["spec"].get("instanceSelector"), falco_labels)
        and matches(raw["spec"].get("selector"), node_labels)
    )


def for_whole_falco(raw: Json, falco_name: str, falco_labels: dict[str, str]) -> bool:
    for_falco = raw["metadata"]["labels"].get(FOR_FALCO)
    return (for_falco is None or for_falco == falco_name) and matches(raw["spec"].get("instanceSelector"), falco_labels)


def test_every_consumer_agrees_with_one_reading_of_selectors_and_the_for_falco_label() -> None:
    rng = random.Random(22)
    for _ in range(200):
        artifacts = [random_artifact(rng, index) for index in range(6)]
        falco_labels = {name: dict(rng.choice(LABEL_CHOICES)) for name in FALCOS}
        nodes = {f"node{i}": dict(rng.choice(LABEL_CHOICES)) for i in range(3)}
        agents = [Agent(f"{name}-{node}", node, labels, falco_labels[name], name)
                  for name in FALCOS for node, labels in nodes.items()]  # fmt: skip
        for raw in artifacts:
            expected = {agent.pod for agent in agents
                        if for_pod(raw, agent.falco, dict(agent.falco_labels), dict(agent.node_labels))}  # fmt: skip
            model = parse_artifact(raw)
            assert model is not None
            status_view = {agent.pod for agent in targeted(Target("Rulesfile", "x", 1, Audience.of(model)), agents)}
            assert status_view == expected, raw
            agent_view = {agent.pod for agent in agents
                          if select([raw], agent.node_labels, agent.falco_labels, agent.falco)[0]}  # fmt: skip
            assert agent_view == expected, raw
        for name in FALCOS:
            # A Falco as a whole: an artifact counts when it is for this Falco (its node selector aside).
            for_falco = [raw for raw in artifacts if for_whole_falco(raw, name, falco_labels[name])]
            references = artifact_references(falco(name, falco_labels[name]), artifacts)
            assert set(references.configmaps) == {f"cm-{raw['metadata']['name']}" for raw in for_falco}
            assert artifact_summary(name, falco_labels[name], artifacts)["selected"] == len(for_falco)


def test_another_falcos_generated_rulesfile_is_not_counted_nor_granted() -> None:
    artifacts = [rulesfile("everyone"), rulesfile("b-falcorules", {FOR_FALCO: "b"})]
    assert artifact_summary("a", {}, artifacts)["selected"] == 1
    assert artifact_references(falco("a", {}), artifacts).configmaps == ("cm-everyone",)
    assert artifact_references(falco("b", {}), artifacts).configmaps == ("cm-b-falcorules", "cm-everyone")
