"""Artifact status aggregation (pure): counts, conditions and messages from the agents' reports."""

from __future__ import annotations

from typing import Any

from falco_operator.api import LabelSelector
from falco_operator.artifacts.audience import Audience
from falco_operator.status import Agent, Target, artifact_status, same_status

NOW = "2026-11-24T12:00:00Z"


def report(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"status": {"artifacts": entries}}


def entry(state: str, generation: int = 2, **extra: Any) -> dict[str, Any]:
    return {"kind": "Rulesfile", "name": "rules", "generation": generation, "state": state, **extra}


def agents(count: int) -> list[Agent]:
    return [Agent(f"pod-{i}", f"node{i}", {"zone": "a" if i % 2 else "b"}) for i in range(1, count + 1)]


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in status["conditions"]}


def test_programmed_only_when_every_targeted_agent_installed_this_generation() -> None:
    target = Target("Rulesfile", "rules", 2)
    reports = {f"pod-{i}": report([entry("Loaded")]) for i in range(1, 8)}
    reports["pod-8"] = report([entry("Installed", generation=1)])  # still the previous generation
    status = artifact_status(target, agents(9), reports, None, NOW)  # pod-9 has no report yet
    assert status["nodes"] == {"targeted": 9, "installed": 7, "loaded": 7, "failed": 0, "summary": "7/9"}
    assert conditions(status)["Programmed"] == (
        "False", "Pending", "7/9 agents installed it, Falco loaded it on 7; waiting for node8, node9"
    )  # fmt: skip
    reports["pod-8"] = report([entry("Installed")])
    reports["pod-9"] = report([entry("Loaded")])
    done = artifact_status(target, agents(9), reports, status, NOW)
    assert conditions(done)["Programmed"] == (
        "True", "Programmed", "9/9 agents installed it, Falco loaded it on 8; not loaded by Falco on node8"
    )  # fmt: skip
    assert all(c["observedGeneration"] == 2 for c in done["conditions"])


def test_failures_name_five_nodes_then_count_the_rest_and_set_valid_and_resolved_refs() -> None:
    target = Target("Rulesfile", "rules", 2)
    reports = {f"pod-{i}": report([entry("Invalid", reason="InvalidContent", message="line 3: bad")])
               for i in range(1, 8)}  # fmt: skip
    status = artifact_status(target, agents(7), reports, None, NOW)
    programmed = conditions(status)["Programmed"]
    assert programmed[:2] == ("False", "Failed")
    assert programmed[2].endswith("failed on node1, node2, node3, node4, node5 (+2 more): line 3: bad")
    assert conditions(status)["Valid"] == ("False", "InvalidContent", "line 3: bad")
    missing = {"pod-1": report([entry("Failed", reason="ConfigMapNotFound", message="ConfigMap x does not exist")])}
    unresolved = artifact_status(target, agents(1), missing, None, NOW)
    assert conditions(unresolved)["ResolvedRefs"] == ("False", "ConfigMapNotFound", "ConfigMap x does not exist")


def test_selectors_decide_which_agents_are_targeted_and_no_target_is_not_programmed() -> None:
    target = Target("Rulesfile", "rules", 2, Audience(selector=LabelSelector(match_labels={"zone": "a"})))
    status = artifact_status(target, agents(4), {}, None, NOW)
    assert status["nodes"]["targeted"] == 2
    nowhere = Target("Rulesfile", "rules", 2, Audience(instance_selector=LabelSelector(match_labels={"team": "x"})))
    assert conditions(artifact_status(nowhere, agents(4), {}, None, NOW))["Programmed"][:2] == ("False", "NoAgents")


def test_the_operator_own_finding_makes_it_invalid_before_any_agent_reports() -> None:
    target = Target("Rulesfile", "rules", 2, invalid="inline source: line 1: priority 'LOUD' is not one of ...")
    assert conditions(artifact_status(target, agents(1), {}, None, NOW))["Valid"][:2] == ("False", "InvalidContent")


def test_an_unchanged_aggregate_is_not_written_again_and_transition_times_stay() -> None:
    target = Target("Rulesfile", "rules", 2)
    reports = {"pod-1": report([entry("Loaded", digest="sha256:abc")])}
    first = artifact_status(target, agents(1), reports, None, NOW)
    assert first["resolvedDigest"] == "sha256:abc"
    live = {key: value for key, value in first.items() if value is not None}
    again = artifact_status(target, agents(1), reports, live, "2026-11-24T13:00:00Z")
    assert same_status(live, again)
    assert not same_status(live, artifact_status(target, agents(2), reports, live, NOW))


def test_identical_node_messages_are_grouped_and_distinct_ones_listed_in_order() -> None:
    target = Target("Rulesfile", "rules", 2)
    reports = {f"pod-{i}": report([entry("Invalid", reason="InvalidContent", message="line 3: bad")])
               for i in range(1, 4)}  # fmt: skip
    reports["pod-4"] = report([entry("Failed", reason="PullFailed", message="registry down")])
    message = conditions(artifact_status(target, agents(4), reports, None, NOW))["Programmed"][2]
    assert message.endswith("failed on node1, node2, node3: line 3: bad; node4: registry down")
    assert message.count("line 3: bad") == 1


def test_many_distinct_messages_show_five_groups_and_count_the_other_nodes() -> None:
    target = Target("Rulesfile", "rules", 2)
    reports = {f"pod-{i}": report([entry("Failed", reason="PullFailed", message=f"error {i}")]) for i in range(1, 9)}
    message = conditions(artifact_status(target, agents(8), reports, None, NOW))["Programmed"][2]
    assert "node5: error 5; (+3 more nodes with other messages)" in message
    assert "error 6" not in message


def test_huge_agent_messages_and_reasons_are_clipped_below_what_the_crd_accepts() -> None:
    target = Target("Rulesfile", "rules", 2)
    reports = {f"pod-{i}": report([entry("Invalid", reason="R" * 5000, message=f"{i}" + "x" * 100_000)])
               for i in range(1, 10)}  # fmt: skip
    status = artifact_status(target, agents(9), reports, None, NOW)
    for condition in status["conditions"]:
        assert len(condition["message"]) <= 4096
        assert len(condition["reason"]) <= 128
    assert "(clipped)" in conditions(status)["Valid"][2]


def test_a_warning_is_recorded_when_valid_or_resolved_refs_turns_false_or_changes_problem_only() -> None:
    from falco_operator.status.aggregate import warnings_to_record

    target = Target("Rulesfile", "rules", 2, invalid="line 1: bad")
    first = artifact_status(target, agents(1), {}, None, NOW)
    assert warnings_to_record(None, first) == [("InvalidContent", "line 1: bad")]
    assert warnings_to_record(first, artifact_status(target, agents(1), {}, first, NOW)) == []
    other = Target("Rulesfile", "rules", 3, invalid="line 2: worse")
    assert warnings_to_record(first, artifact_status(other, agents(1), {}, first, NOW)) == [
        ("InvalidContent", "line 2: worse")
    ]
    healthy = artifact_status(Target("Rulesfile", "rules", 4), agents(1), {}, first, NOW)
    assert warnings_to_record(first, healthy) == []


def test_a_failed_refresh_keeps_programmed_and_says_so_in_resolved_refs() -> None:
    target = Target("Rulesfile", "rules", 2)
    problem = {"reason": "Unauthorized", "message": "Secret pull does not authenticate to r.io"}
    reports = {"pod-1": report([entry("Loaded", refreshProblem=problem)]), "pod-2": report([entry("Loaded")])}
    status = artifact_status(target, agents(2), reports, None, NOW)
    assert conditions(status)["Programmed"][:2] == ("True", "Programmed")
    resolved = conditions(status)["ResolvedRefs"]
    assert resolved[:2] == ("False", "Unauthorized")
    assert "1 node(s)" in resolved[2]
    assert "node1: Secret pull does not authenticate to r.io" in resolved[2]


def test_dependencies_satisfied_names_what_agents_withhold_and_warns_once() -> None:
    from falco_operator.status.aggregate import warnings_to_record

    target = Target("Rulesfile", "rules", 2)
    gone = "withheld: it uses macro 'm', which Rulesfile base (50-03-base-inline.yaml) defined and no longer does"
    reports = {
        "pod-1": report([entry("Failed", reason="DependencyGone", message=gone)]),
        "pod-2": report([entry("Failed", reason="DependencyGone", message=gone)]),
        "pod-3": report([entry("Pending", reason="DependencyPending", message="waits for Plugin container")]),
    }
    status = artifact_status(target, agents(3), reports, None, NOW)
    satisfied = conditions(status)["DependenciesSatisfied"]
    assert satisfied[:2] == ("False", "DependencyGone")
    assert satisfied[2] == f"not written on 3 node(s): node1, node2: {gone}; node3: waits for Plugin container"
    assert status["nodes"]["failed"] == 2
    assert ("DependencyGone", satisfied[2]) in warnings_to_record(None, status)
    assert warnings_to_record(status, artifact_status(target, agents(3), reports, status, NOW)) == []
    healthy = {f"pod-{i}": report([entry("Loaded")]) for i in range(1, 4)}
    assert conditions(artifact_status(target, agents(3), healthy, status, NOW))["DependenciesSatisfied"][0] == "True"
