"""The agent's planning step: the rule-set check is reached once per distinct set of rules files, so passes started
by an answer from Falco (or a report change, a relabel) do not check unchanged rules again."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from artifact_agent.confirmation import UNKNOWN, FalcoView, confirm
from artifact_agent.planner import PassPlanner
from falco_operator.api import Rulesfile
from falco_operator.artifacts import RULES_DIR, Artifact, ArtifactKey, Delivered, Plan, sha256_hex
from falco_operator.artifacts.rules import check_rule_set, rules_set_check, setcheck

PLUGINS = "/usr/share/falco/plugins"


@pytest.fixture
def set_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every real check of a rules set, counted (the real check still does the work)."""
    calls: list[int] = []
    real = check_rule_set

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(setcheck, "check_rule_set", counting)
    return calls


def rulesfile(name: str, text: str, generation: int = 1) -> Rulesfile:
    return Rulesfile.model_validate({"metadata": {"name": name, "generation": generation},
                                     "spec": {"inlineRules": text}})  # fmt: skip


def macros_and_rule(unique: str, field: str = "proc.name") -> list[Artifact]:
    base = rulesfile("base", f"- macro: {unique}\n  condition: {field} = sh\n")
    uses = rulesfile("uses", f"- rule: r\n  desc: d\n  condition: {unique}\n  output: o\n  priority: NOTICE\n")
    return [base, uses]


def remembered(result: Plan) -> dict[ArtifactKey, Delivered]:
    """What the agent keeps as last good after a pass."""
    return {outcome.key: outcome.delivered for outcome in result.outcomes if not outcome.delivered.empty}


def loaded_by_falco(result: Plan) -> FalcoView:
    rules = {name: sha256_hex(data) for outcome in result.outcomes
             for (directory, name), data in outcome.delivered.files.items() if directory == RULES_DIR}  # fmt: skip
    return FalcoView(reachable=True, version="0.44.1", rules=rules)


def states(outcomes: Sequence[Any]) -> dict[str, tuple[str, str]]:
    return {outcome.key.name: (outcome.state, outcome.message) for outcome in outcomes}


@pytest.mark.anyio
async def test_a_pass_where_only_falcos_answer_changed_does_not_check_the_rules_set_again(
    set_checks: list[int],
) -> None:
    planner = PassPlanner(PLUGINS, rules_set_check)
    artifacts = macros_and_rule(f"m_{uuid.uuid4().hex}")
    first = await planner.plan(artifacts, {}, {})
    before = states(confirm(first.outcomes, UNKNOWN))
    # Falco answers: it loaded both files. The agent's next pass plans the same artifacts with its last good files.
    second = await planner.plan(artifacts, {}, remembered(first))
    after = states(confirm(second.outcomes, loaded_by_falco(first)))
    assert set_checks == [2], "one check of the two files, reused by the second pass"
    assert second.directories == first.directories
    assert {name: state for name, (state, _) in before.items()} == {"base": "Installed", "uses": "Installed"}
    assert {name: state for name, (state, _) in after.items()} == {"base": "Loaded", "uses": "Loaded"}


@pytest.mark.anyio
async def test_a_changed_rules_file_is_checked_again_and_a_refusal_is_reused_as_it_was(set_checks: list[int]) -> None:
    planner = PassPlanner(PLUGINS, rules_set_check)
    unique = f"m_{uuid.uuid4().hex}"
    good = macros_and_rule(unique)
    first = await planner.plan(good, {}, {})
    broken = macros_and_rule(unique, field="proc.nam")
    refused = [await planner.plan(broken, {}, remembered(first)) for _ in range(3)]
    # The good set, then the changed set; checked again with base's last good file, the set is the good one.
    assert set_checks == [2, 2]
    for result in refused:
        assert result.directories == first.directories, "the last good files stay"
        base_state, base_message = states(result.outcomes)["base"]
        assert base_state == "Invalid"
        assert "unknown field proc.nam" in base_message
        assert base_message.endswith("; the last good files stay")
        assert states(result.outcomes)["uses"][0] == "Installed"
