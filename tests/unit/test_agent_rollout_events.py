"""The agent's side of a rollout outside planning: which artifact updates wake it, what its report says."""

from __future__ import annotations

import copy
from typing import Any

from artifact_agent.agent import _meaningful_change
from artifact_agent.report import report_status
from falco_operator.api.plain_report import ReportedAnalysis
from falco_operator.artifacts import ArtifactKey, Delivered, Outcome

ROLLOUT = {"phase": "Progressing", "stableGeneration": 3, "candidateGeneration": 4, "nodes": ["a"],
           "snapshot": "web-rulesfile-stable", "message": "waiting for the analysis of a"}  # fmt: skip


def updated(change: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    old: dict[str, Any] = {"metadata": {"generation": 4}, "status": {"observedGeneration": 4, "rollout": ROLLOUT}}
    new = copy.deepcopy(old)
    new["status"]["rollout"] = {**ROLLOUT, **change}
    return old, new


def test_status_rollout_changes_that_move_nodes_wake_the_agent_and_the_rest_of_the_status_does_not() -> None:
    for change in ({"phase": "Halted"}, {"nodes": ["a", "b"]}, {"stableGeneration": 4}, {"snapshot": "x"},
                   {"candidateGeneration": 5}):  # fmt: skip
        assert _meaningful_change(*updated(change)), change
    assert not _meaningful_change(*updated({"message": "step 1/2"}))
    old, new = updated({})
    new["status"]["conditions"] = [{"type": "Programmed", "status": "False"}]
    assert not _meaningful_change(old, new)


def test_a_verdict_is_reported_on_the_entry_of_the_generation_it_judged_only() -> None:
    key = ArtifactKey("Rulesfile", "web")
    verdict = ReportedAnalysis(generation=4, result="Failed", check="RuleRate", message="rule x", seconds=12.0)
    candidate = Outcome(key, 4, "Loaded", Delivered(), "Loaded")
    entry = report_status([candidate], {}, analyses={key: verdict})["artifacts"][0]
    assert entry["analysis"] == {"generation": 4, "result": "Failed", "check": "RuleRate", "message": "rule x",
                                 "seconds": 12.0}  # fmt: skip
    stable = Outcome(key, 3, "Loaded", Delivered(), "Loaded")
    assert "analysis" not in report_status([stable], {}, analyses={key: verdict})["artifacts"][0]
